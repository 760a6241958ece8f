"""SCPI engine: header matching, program data, compound messages, status, errors."""


import pytest

from simulator.scpi import (
    CME,
    DDE,
    EAV,
    ESB,
    EXE,
    MAV,
    MSS,
    OPC,
    PON,
    QYE,
    Boolean,
    ChannelList,
    Choice,
    Command,
    CommandTree,
    ErrorEntry,
    ErrorQueue,
    EventRegister,
    ListOf,
    Number,
    Raw,
    ScpiError,
    ScpiInstrument,
    String,
    Token,
    error_reply_2450,
    error_reply_classic,
    error_reply_keysight,
    format_bool,
    format_nr1,
    format_shortest,
    nr3_formatter,
    parse_data,
    quote,
)

IDENTITY = "ACME INSTRUMENTS,MODEL 42,0001,1.0"
BUFFER_FULL = 512


class Meter(ScpiInstrument):
    """A two-channel source-meter with a small command set."""

    def __init__(self, **options):
        options.setdefault("error_messages", {803: "Not permitted with OUTPUT off"})
        options.setdefault(
            "suffix_ranges", {"SOURce": range(1, 3), "SENS": range(1, 3)}
        )
        super().__init__("meter", IDENTITY, **options)
        self.measurement = self.add_register(EventRegister("measurement", 0))
        self.triggers = 0
        self.reset()

    def reset(self):
        self.level_v = {1: 0.0, 2: 0.0}
        self.function = {1: "VOLT", 2: "VOLT"}
        self.limit_a = {1: 1e-4, 2: 1e-4}
        self.nplc = {1: 1.0, 2: 1.0}
        self.sense = "CURR:DC"
        self.output = False
        self.count = 1
        self.label = ""
        self.closed = set()
        self.levels_v = ()
        self.beeps = []
        self.trace_calls = []

    def trigger(self):
        self.triggers += 1

    def commands(self):
        return [
            Command(
                ":SOURce[1]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
                set=self.level_v.__setitem__,
                query=self.level_v.__getitem__,
                params=[Number(-21, 21, default=0)],
            ),
            Command(
                "[:SOURce[1]]:FUNCtion[:MODE]",
                set=self.function.__setitem__,
                query=self.function.__getitem__,
                params=[Choice("VOLTage|CURRent")],
            ),
            Command(
                ":SOURce[1]:LIST:VOLTage",
                set=lambda _, levels: setattr(self, "levels_v", levels),
                query=lambda _: self.levels_v,
                params=[ListOf(Number(-21, 21), max_count=5)],
            ),
            Command(
                ":SENSe#:CURRent[:DC]:PROTection[:LEVel]",
                set=self.limit_a.__setitem__,
                query=self.limit_a.__getitem__,
                params=[Number(1e-9, 0.1, default=1e-4)],
            ),
            Command(
                ":SENSe#:CURRent[:DC]:NPLCycles",
                set=self.nplc.__setitem__,
                query=self.nplc.__getitem__,
                params=[Number(0.01, 10, default=1)],
            ),
            Command(
                ":SENSe#:FUNCtion",
                set=lambda _, name: setattr(self, "sense", name),
                query=lambda _: quote(self.sense),
                params=[Choice("CURRent[:DC]|VOLTage[:DC]", quoted=True)],
            ),
            Command(
                ":OUTPut[1][:STATe]",
                set=lambda _, on: setattr(self, "output", on),
                query=lambda _: self.output,
                params=[Boolean()],
            ),
            Command(
                ":TRIGger:COUNt",
                set=lambda n: setattr(self, "count", n),
                query=lambda: self.count,
                params=[Number(1, 2500, integer=True, default=1)],
            ),
            Command(
                ":SYSTem:LABel",
                set=lambda text: setattr(self, "label", text),
                query=lambda: quote(self.label),
                params=[String()],
            ),
            Command(
                ":SYSTem:BEEPer[:IMMediate]",
                set=lambda f, t: self.beeps.append((f, t)),
                params=[Number(20, 8000), Number(0, 10, omitted=0.1)],
            ),
            Command(
                ":ROUTe:CLOSe",
                set=self.closed.update,
                query=lambda: tuple(sorted(self.closed)),
                params=[ChannelList(1, 4)],
            ),
            Command(":READ?", query=self.read_current),
            Command(
                ":TRACe:DATA?",
                query=self.trace_data,
                query_params=[
                    Number(1, 100, integer=True),
                    Number(1, 100, integer=True),
                    String(omitted="defbuffer1"),
                    ListOf(Choice("READing|SOURce|UNIT"), min_count=0),
                ],
            ),
            Command(":TRACe:FILL", set=lambda: self.measurement.set_bits(BUFFER_FULL)),
            Command(
                ":DIAGnostic:ECHO",
                set=lambda *tokens: None,
                query=lambda tokens: tokens,
                query_params=[ListOf(Raw(), min_count=0)],
                reply=repr,
            ),
            Command(":DIAGnostic:FAIL", set=self.fail),
            *self.measurement.commands(":STATus:MEASurement"),
        ]

    def read_current(self):
        if not self.output:
            raise ScpiError(803)
        return 1.5e-6

    def trace_data(self, start, end, buffer, elements):
        self.trace_calls.append((start, end, buffer, elements))
        return [float(n) for n in range(start, end + 1)]

    def fail(self):
        raise RuntimeError("a bug in a handler")


@pytest.fixture
def meter():
    instrument = Meter()
    instrument.write("*CLS")
    return instrument


def ask(instrument, message):
    instrument.write(message)
    return instrument.read()


def errors(instrument):
    """Drain the error queue: the codes, oldest first."""
    codes = []
    while True:
        reply = ask(instrument, ":SYST:ERR?")
        code = int(reply.split(",", 1)[0])
        if code == 0:
            return codes
        codes.append(code)


def rejects(instrument, message, code):
    """The message gets no reply and queues exactly `code`."""
    instrument.write(message)
    return instrument.read() is None and errors(instrument) == [code]


# Headers.


@pytest.mark.parametrize(
    "header",
    [
        ":SOURce:VOLTage:LEVel:IMMediate:AMPLitude",
        ":SOUR:VOLT:LEV:IMM:AMPL",
        ":source:voltage",
        ":sOuRcE:vOlT:lEvEl",
        ":SOUR:VOLT",
        ":SOUR:VOLT:IMM",
        ":SOUR:VOLT:AMPL",
        ":SOUR:VOLT:LEV:AMPL",
        "SOUR:VOLT",
        ":SOUR1:VOLT",
        ":SOURCE1:VOLTAGE:LEVEL",
    ],
)
def test_every_spelling_and_optional_node_reaches_the_command(meter, header):
    meter.write(f"{header} 1.25")
    assert meter.level_v[1] == 1.25
    assert ask(meter, f"{header}?") == "1.25"
    assert errors(meter) == []


@pytest.mark.parametrize(
    "header", [":SOURC:VOLT", ":SOU:VOLT", ":SOUR:VOLTA", ":VOLT", ":SOUR", ":SOUR:LEV"]
)
def test_anything_but_the_short_or_long_form_is_an_undefined_header(meter, header):
    assert rejects(meter, f"{header} 1", -113)
    assert meter.level_v[1] == 0.0


def test_an_optional_first_node_can_be_left_out(meter):
    meter.write(":FUNC CURR")
    meter.write(":SOUR2:FUNC:MODE CURRENT")
    assert meter.function == {1: "CURR", 2: "CURR"}
    assert ask(meter, "func?") == "CURR"


def test_a_numeric_suffix_selects_the_channel_and_defaults_to_1(meter):
    meter.write(":SOUR2:VOLT 3;:SOUR:VOLT -2;:SENS2:CURR:PROT 1e-3")
    assert meter.level_v == {1: -2.0, 2: 3.0}
    assert meter.limit_a == {1: 1e-4, 2: 1e-3}
    assert ask(meter, ":SOUR2:VOLT?;:SOUR1:VOLT?;:SOUR02:VOLT?") == "3.0;-2.0;3.0"


@pytest.mark.parametrize(
    "message",
    [
        ":SOUR3:VOLT 1",
        ":SOUR0:VOLT 1",
        ":SENS9:CURR:NPLC 1",
        ":OUTP2 ON",
        ":SYST2:LAB 'x'",
        ":SOUR:VOLT2 1",
    ],
)
def test_a_suffix_outside_the_declared_range_is_error_114(meter, message):
    assert rejects(meter, message, -114)
    assert meter.level_v == {1: 0.0, 2: 0.0}


def test_query_and_command_forms_exist_only_where_declared(meter):
    assert rejects(meter, ":READ", -113)
    assert rejects(meter, ":TRAC:FILL?", -113)
    assert rejects(meter, "*IDN", -113)
    assert rejects(meter, "*FOO?", -113)


@pytest.mark.parametrize(
    "header",
    [":SOUR:", ":SOUR::VOLT", ":SOUR:VOLT??", "SOUR-VOLT", "*ID-N?", ":SOUR:VOLT,1"],
)
def test_a_malformed_header_is_a_syntax_error(meter, header):
    assert rejects(meter, f"{header} 1", -102)


def test_header_resolution_is_cached_by_exact_text():
    meter = Meter()
    tree = meter.command_tree
    first = tree.resolve("SOUR2:VOLT")
    assert tree.resolve("SOUR2:VOLT") is first
    assert first.suffixes == (2,)
    other = tree.resolve("sour2:volt:lev")
    assert other.command is first.command
    for _ in range(2):
        with pytest.raises(ScpiError) as caught:
            tree.resolve("SOUR:BOGUS")
        assert caught.value.code == -113


def test_suffixes_reach_the_handler_in_pattern_order():
    seen = []
    tree = CommandTree(
        [
            Command(
                ":CALCulate#:LIMit#[:UPPer]",
                set=lambda *a: seen.append(a),
                params=[Number()],
            )
        ],
        {"CALC": range(1, 5), "LIM": range(1, 3)},
    )
    assert tree.resolve("CALC3:LIM:UPP").suffixes == (3, 1)
    assert tree.resolve("CALCULATE:LIMIT2").suffixes == (1, 2)


@pytest.mark.parametrize(
    "commands",
    [
        [
            Command(":SOUR:VOLT", set=print),
            Command(":SOURce:VOLTage[:LEVel]", set=print),
        ],
        [Command(":SOURce:VOLTage", set=print), Command(":SOURce:VOLTs", set=print)],
        [Command(":SENSe#:CURR", set=print), Command(":SENSe:VOLT", set=print)],
        [Command(":source:volt", set=print)],
        [Command(":SOURce:VOLTage2", set=print)],
        [Command(":SOUR[:VOLT", set=print)],
    ],
)
def test_a_bad_declaration_is_refused(commands):
    with pytest.raises(ValueError):
        CommandTree(commands)


def test_commands_are_declared_consistently():
    with pytest.raises(ValueError):
        Command(":READ?", set=print, query=print)
    with pytest.raises(ValueError):
        Command(":SOUR:LIST", set=print, params=[ListOf(Number()), Number()])
    with pytest.raises(ValueError):
        Command(":SOUR:VOLT")
    with pytest.raises(ValueError):
        Number(2, 1)


def test_an_instrument_command_replaces_a_builtin_one():
    class Keysight(Meter):
        def commands(self):
            return [
                *super().commands(),
                Command("*IDN?", query=lambda: "Keysight Technologies,B2902A,1,1"),
                Command(":SYSTem:ERRor[:NEXT]?", query=lambda: '+0,"custom"'),
            ]

    meter = Keysight()
    assert ask(meter, "*IDN?") == "Keysight Technologies,B2902A,1,1"
    assert ask(meter, ":SYST:ERR:NEXT?") == '+0,"custom"'
    assert ask(meter, "*OPC?") == "1"


# Program data.


def test_program_data_elements_are_parsed_by_kind():
    assert parse_data(" 1, -2.5e-3 ,+.5,7.E2, 1.5 E 1") == [
        Token("number", 1.0), Token("number", -2.5e-3), Token("number", 0.5),
        Token("number", 700.0), Token("number", 15.0),
    ]  # fmt: skip
    assert parse_data("on,Curr") == [Token("word", "ON"), Token("word", "CURR")]
    assert parse_data("\"a \"\"b\"\";c\",'it''s'") == [
        Token("string", 'a "b";c'), Token("string", "it's"),
    ]  # fmt: skip
    assert parse_data("(@1,3:4)") == [Token("channels", ((1, 1), (3, 4)))]
    assert parse_data("#H1F,#q17,#B101") == [
        Token("number", 31), Token("number", 15), Token("number", 5),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1,", -102),
        (",1", -102),
        ("1,,2", -102),
        ("ON OFF", -102),
        ("(1,2)", -102),
        ("(@1,a)", -102),
        ("1.2.3", -120),
        ("1e999", -120),
        ("#B102", -120),
        ("1V", -138),
        ("2 mA", -138),
        ('"open', -151),
        ("'open", -151),
    ],
)
def test_malformed_program_data_is_refused(text, code):
    with pytest.raises(ScpiError) as caught:
        parse_data(text)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("value", "level_v"),
    [
        ("1", 1.0),
        ("-1.5", -1.5),
        ("+2.5E-1", 0.25),
        (".5", 0.5),
        ("21", 21.0),
        ("MIN", -21.0),
        ("max", 21.0),
        ("MAXimum", 21.0),
        ("DEF", 0.0),
        ("default", 0.0),
    ],
)
def test_numbers_accept_nr1_nr2_nr3_and_min_max_def(meter, value, level_v):
    meter.level_v[1] = 9.0
    meter.write(f":SOUR:VOLT {value}")
    assert meter.level_v[1] == level_v
    assert isinstance(meter.level_v[1], float)
    assert errors(meter) == []


@pytest.mark.parametrize(
    ("value", "code"),
    [("21.01", -222), ("-1e3", -222), ("UP", -104), ('"1"', -104), ("(@1)", -104)],
)
def test_a_bad_number_is_refused_and_never_clipped(meter, value, code):
    meter.level_v[1] = 9.0
    assert rejects(meter, f":SOUR:VOLT {value}", code)
    assert meter.level_v[1] == 9.0


def test_nr1_numbers_round_and_accept_non_decimal_forms(meter):
    for value, count in [("2.5", 3), ("7.49", 7), ("#H10", 16), ("1E3", 1000)]:
        meter.write(f":TRIG:COUN {value}")
        assert meter.count == count
        assert type(meter.count) is int
    assert ask(meter, ":TRIG:COUN?") == "1000"
    assert rejects(meter, ":TRIG:COUN 0.4", -222)


def test_a_number_query_answers_its_limits(meter):
    assert ask(meter, ":SOUR:VOLT? MAX;:SOUR:VOLT? minimum;:SOUR:VOLT? DEF") == (
        "21.0;-21.0;0.0"
    )
    assert ask(meter, ":TRIG:COUN? MAX") == "2500"
    assert ask(meter, ":SENS:CURR:PROT? DEF") == "0.0001"
    assert rejects(meter, ":SOUR:VOLT? 3", -104)
    assert rejects(meter, ":SOUR:VOLT? UP", -224)
    assert rejects(meter, ":SOUR:LIST:VOLT? MAX", -108)


def test_def_without_a_default_is_an_illegal_value(meter):
    assert rejects(meter, ":SYST:BEEP DEF", -224)


@pytest.mark.parametrize(
    ("value", "state"),
    [
        ("ON", True),
        ("off", False),
        ("1", True),
        ("0", False),
        ("2", True),
        ("0.4", False),
        ("-1", True),
    ],
)
def test_booleans_accept_on_off_and_numbers(meter, value, state):
    meter.output = not state
    meter.write(f":OUTP {value}")
    assert meter.output is state
    assert ask(meter, ":OUTP?") == ("1" if state else "0")


def test_a_bad_boolean_is_refused(meter):
    assert rejects(meter, ":OUTP YES", -224)
    assert rejects(meter, ":OUTP 'ON'", -104)


def test_choices_take_long_or_short_forms_and_give_the_short_one(meter):
    meter.write(":FUNC current;:SOUR2:FUNC Curr")
    assert meter.function == {1: "CURR", 2: "CURR"}
    assert rejects(meter, ":FUNC CURRE", -224)
    assert rejects(meter, ":FUNC 'CURR'", -104)
    assert Choice("VOLTage|CURRent", "RESistance").names == ["VOLT", "CURR", "RES"]


def test_a_quoted_choice_matches_the_string_inside(meter):
    meter.write(':SENS:FUNC "volt"')
    assert meter.sense == "VOLT:DC"
    meter.write(":SENS:FUNC 'CURRENT:DC'")
    assert ask(meter, ":SENS:FUNC?") == '"CURR:DC"'
    assert rejects(meter, ":SENS:FUNC CURR", -104)
    assert rejects(meter, ':SENS:FUNC "RES"', -224)


def test_strings_keep_quotes_and_separators_inside(meter):
    meter.write(':SYST:LAB "say ""hi""; then, go";:SYST:LAB?')
    assert meter.label == 'say "hi"; then, go'
    assert meter.read() == '"say ""hi""; then, go"'
    meter.write(":SYST:LAB 'it''s'")
    assert meter.label == "it's"
    assert rejects(meter, ":SYST:LAB plain", -104)
    assert rejects(meter, ':SYST:LAB "open;:SYST:LAB?', -151)


def test_channel_lists_expand_ranges(meter):
    meter.write(":ROUT:CLOS (@1)")
    meter.write(":ROUT:CLOS (@ 2 : 3 )")
    assert ask(meter, ":ROUT:CLOS?") == "1,2,3"
    assert ChannelList(1, 8).convert(Token("channels", ((4, 2), (7, 7)))) == (
        4,
        3,
        2,
        7,
    )
    assert rejects(meter, ":ROUT:CLOS (@4:5)", -224)
    assert rejects(meter, ":ROUT:CLOS 1", -104)


def test_number_lists_take_every_remaining_parameter(meter):
    meter.write(":SOUR:LIST:VOLT 0.1, 0.2,0.3")
    assert meter.levels_v == (0.1, 0.2, 0.3)
    assert ask(meter, ":SOUR:LIST:VOLT?") == "0.1,0.2,0.3"
    assert rejects(meter, ":SOUR:LIST:VOLT 1,2,3,4,5,6", -108)
    assert rejects(meter, ":SOUR:LIST:VOLT", -109)
    assert rejects(meter, ":SOUR:LIST:VOLT 1,22", -222)
    assert meter.levels_v == (0.1, 0.2, 0.3)


def test_missing_and_extra_parameters(meter):
    assert rejects(meter, ":SOUR:VOLT", -109)
    assert rejects(meter, ":SOUR:VOLT 1,2", -108)
    assert rejects(meter, "*RST 1", -108)
    assert rejects(meter, ":SYST:BEEP", -109)
    meter.write(":SYST:BEEP 440;:SYST:BEEP 880,2")
    assert meter.beeps == [(440.0, 0.1), (880.0, 2.0)]


def test_optional_and_trailing_query_parameters(meter):
    assert ask(meter, ":TRAC:DATA? 1,3") == "1.0,2.0,3.0"
    assert ask(meter, ":TRAC:DATA? 2,2,'buf',read,SOURCE") == "2.0"
    assert meter.trace_calls == [
        (1, 3, "defbuffer1", ()),
        (2, 2, "buf", ("READ", "SOUR")),
    ]
    assert rejects(meter, ":TRAC:DATA? 1", -109)
    assert ask(meter, ":DIAG:ECHO? 1,X,'s'") == (
        "(Token(kind='number', value=1.0), Token(kind='word', value='X'), "
        "Token(kind='string', value='s'))"
    )


# Messages.


def test_whitespace_follows_ieee_488_2(meter):
    meter.write("  :SOUR:VOLT\t 1.5 ;  :SOUR2:VOLT   -1 , ")
    assert errors(meter) == [-102]
    meter.write("  :SOUR:VOLT\t 1.5 ;\t:SOUR2:VOLT   -1  \r\n")
    assert meter.level_v == {1: 1.5, 2: -1.0}
    assert rejects(meter, ":SOUR: VOLT 1", -102)
    assert rejects(meter, ":SOUR :VOLT 1", -113)
    assert rejects(meter, ":SOUR:VOLT1.5", -102)


def test_a_relative_header_continues_the_previous_path(meter):
    meter.write(":SENS:CURR:PROT 1e-3;NPLC 2")
    assert meter.limit_a[1] == 1e-3
    assert meter.nplc[1] == 2.0
    meter.write(":SOUR2:VOLT 1;FUNC CURR;LIST:VOLT 1,2")
    assert meter.level_v[2] == 1.0
    assert meter.function[2] == "CURR"
    assert meter.levels_v == (1.0, 2.0)
    assert ask(meter, ":SENS2:CURR:NPLC 5;PROT?") == "0.0001"
    assert errors(meter) == []


def test_the_path_is_textual_and_a_leading_colon_resets_it(meter):
    assert rejects(meter, ":SENS:CURR:PROT:LEV 1e-3;NPLC 2", -113)
    assert meter.limit_a[1] == 1e-3
    assert rejects(meter, ":SENS:CURR:PROT 2e-3;:NPLC 2", -113)
    assert meter.limit_a[1] == 2e-3
    meter.write(":SENS:CURR:PROT 3e-3;:SENS:CURR:NPLC 3;:SOUR:VOLT 1")
    assert (meter.limit_a[1], meter.nplc[1], meter.level_v[1]) == (3e-3, 3.0, 1.0)


def test_common_commands_leave_the_path_alone(meter):
    assert ask(meter, ":SENS:CURR:PROT 1e-3;*OPC?;NPLC 4;*ESR?;NPLC?") == "1;0;4.0"


def test_each_message_starts_at_the_root(meter):
    meter.write(":SENS:CURR:PROT 1e-3")
    assert rejects(meter, "NPLC 2", -113)
    meter.write(":SENS:CURR:PROT 1e-3\nNPLC 2\n")
    assert errors(meter) == [-113]


def test_several_queries_give_one_reply_line(meter):
    meter.write("*IDN?;:SOUR:VOLT 2;:SOUR:VOLT?;:OUTP ON;:OUTP?;:READ?;:TRIG:COUN?")
    assert meter.read() == f"{IDENTITY};2.0;1;1.5e-06;1"
    assert meter.read() is None


def test_empty_units_are_ignored(meter):
    assert ask(meter, ";:SOUR:VOLT 1;;:SOUR:VOLT?;") == "1.0"
    meter.write("")
    meter.write("\n")
    assert errors(meter) == []


def test_a_bad_command_gets_no_reply_and_stops_the_message(meter):
    meter.write(":SOUR:VOLT 1;:BOGUS 2;:SOUR:VOLT 3;*OPC")
    assert meter.read() is None
    assert meter.level_v[1] == 1.0
    assert not meter.event_status & OPC
    assert errors(meter) == [-113]
    assert rejects(meter, ":SOUR:VOLT? MAXI", -224)
    assert rejects(meter, ":READ?", 803)


def test_replies_of_queries_before_an_error_are_kept(meter):
    assert ask(meter, ":SOUR:VOLT?;:BOGUS?;*IDN?") == "0.0"
    assert errors(meter) == [-113]


def test_a_new_message_interrupts_an_unread_reply(meter):
    meter.write(":SOUR:VOLT?")
    meter.write(":SOUR:VOLT 2")
    assert meter.read() is None
    assert errors(meter) == [-410]
    meter.write("*IDN?")
    assert ask(meter, ":SOUR:VOLT?") == "2.0"
    assert errors(meter) == [-410]
    meter.write("*IDN?\n:SOUR:VOLT?")
    assert meter.read() == "2.0"
    assert meter.event_status & QYE


def test_reading_with_nothing_pending_sets_nothing(meter):
    assert meter.read() is None
    assert meter.read() is None
    assert ask(meter, "*ESR?;:SYST:ERR:COUN?") == "0;0"


def test_device_clear_drops_the_reply_and_keeps_the_status(meter):
    meter.write(":BOGUS;")
    meter.write("*IDN?")
    meter.clear()
    assert meter.read() is None
    assert errors(meter) == [-113]


def test_a_handler_bug_is_not_hidden(meter):
    with pytest.raises(RuntimeError):
        meter.write(":DIAG:FAIL")


# Common commands and status.


def test_identity_test_trigger_and_operation_complete(meter):
    assert ask(meter, "*idn?") == IDENTITY
    assert ask(meter, "*TST?") == "0"
    assert ask(meter, "*OPC?") == "1"
    meter.write("*TRG;*trg;*WAI")
    assert meter.triggers == 2
    meter.write("*OPC")
    assert ask(meter, "*ESR?") == str(OPC)


def test_power_on_sets_pon_and_esr_clears_on_read():
    meter = Meter()
    assert ask(meter, "*ESR?") == str(PON)
    assert ask(meter, "*ESR?") == "0"


def test_reset_restores_settings_and_keeps_the_status(meter):
    meter.write(":SOUR:VOLT 5;:OUTP ON;:BOGUS")
    meter.write("*RST")
    assert meter.level_v[1] == 0.0
    assert meter.output is False
    assert ask(meter, "*ESR?") == str(CME)
    assert errors(meter) == [-113]


def test_cls_clears_the_error_queue_and_event_registers(meter):
    meter.write(":BOGUS;")
    meter.write(":SOUR:VOLT 99")
    meter.write(":TRAC:FILL")
    meter.write("*ESE 255;*SRE 255")
    meter.write("*CLS")
    assert ask(meter, ":SYST:ERR:COUN?;*ESR?;:STAT:MEAS?") == "0;0;0"
    assert ask(meter, "*ESE?;*SRE?") == "255;191"


@pytest.mark.parametrize(
    ("message", "code", "bit"),
    [(":BOGUS", -113, CME), (":SOUR:VOLT 30", -222, EXE), (":READ?", 803, DDE)],
)
def test_errors_set_their_event_status_bit(meter, message, code, bit):
    meter.write(message)
    assert ask(meter, "*ESR?") == str(bit)
    assert errors(meter) == [code]


def test_query_errors_set_qye(meter):
    meter.write("*IDN?")
    meter.write("*IDN?")
    meter.read()
    assert ask(meter, "*ESR?") == str(QYE)


def test_status_byte_after_an_error(meter):
    assert ask(meter, "*STB?") == "0"
    meter.write(":BOGUS")
    assert int(ask(meter, "*STB?")) == EAV
    meter.write("*ESE 32")
    assert int(ask(meter, "*STB?")) == EAV | ESB
    meter.write("*SRE 4")
    assert int(ask(meter, "*STB?")) == EAV | ESB | MSS
    assert ask(meter, "*ESR?") == str(CME)
    assert int(ask(meter, "*STB?")) == EAV | MSS
    errors(meter)
    assert ask(meter, "*STB?") == "0"


def test_status_byte_shows_mav_for_an_earlier_reply(meter):
    assert ask(meter, "*IDN?;*STB?") == f"{IDENTITY};{MAV}"
    meter.write("*IDN?")
    assert meter.status_byte() == MAV


def test_enable_registers_take_bytes(meter):
    meter.write("*ESE #H21;*SRE 64")
    assert ask(meter, "*ESE?;*SRE?") == "33;0"
    assert rejects(meter, "*ESE 256", -222)
    assert rejects(meter, "*SRE -1", -222)


def test_a_measurement_register_summarizes_buffer_full_into_bit_0(meter):
    meter.write(":TRAC:FILL")
    assert ask(meter, "*STB?") == "0"
    assert ask(meter, ":STAT:MEAS:COND?") == str(BUFFER_FULL)
    meter.write(":STAT:MEAS:ENAB 512;*SRE 1")
    assert ask(meter, ":STAT:MEAS:ENAB?;*STB?") == f"512;{1 | MAV | MSS}"
    assert ask(meter, ":STAT:MEAS:EVEN?;:STAT:MEAS?") == "512;0"
    assert ask(meter, "*STB?") == "0"
    meter.measurement.clear_bits(BUFFER_FULL)
    meter.measurement.set_bits(BUFFER_FULL)
    assert meter.status_byte() == 1 | MSS
    meter.write(":STAT:PRES")
    assert ask(meter, "*STB?") == "0"
    assert ask(meter, ":STAT:MEAS:ENAB?") == "0"


def test_transition_filters_choose_the_edges_that_latch():
    register = EventRegister("operation", 7)
    register.update(0b11)
    assert register.read_event() == 0b11
    register.negative, register.positive = 0b01, 0
    register.update(0b10)
    register.update(0b00)
    assert register.read_event() == 0b01
    register.signal(1 << 20)
    assert register.event == 0
    with pytest.raises(ValueError):
        EventRegister("bad", 5)


# Errors.


def test_the_error_queue_is_first_in_first_out(meter):
    meter.write(":BOGUS")
    meter.write(":SOUR:VOLT 30")
    meter.write(":OUTP MAYBE")
    assert ask(meter, ":SYST:ERR:COUN?") == "3"
    assert ask(meter, ":SYST:ERR?") == '-113,"Undefined header"'
    assert ask(meter, ":SYSTEM:ERROR:NEXT?") == '-222,"Data out of range"'
    assert ask(meter, ":syst:err:next?") == '-224,"Illegal parameter value"'
    assert ask(meter, ":SYST:ERR?") == '0,"No error"'


def test_an_overflow_replaces_the_newest_entry():
    meter = Meter(error_queue_size=4)
    for code in range(1, 7):
        meter.queue_error(-200 - code)
    assert [entry.code for entry in meter.errors.entries()] == [-201, -202, -203, -350]
    assert errors(meter) == [-201, -202, -203, -350]
    with pytest.raises(ValueError):
        ErrorQueue(1)


def test_handlers_report_errors_with_their_own_text(meter):
    class Picky(Meter):
        def commands(self):
            def refuse(value):
                raise ScpiError(-221, "Settings conflict;limit below 0.1% of range")

            return [Command(":SENS:CURR:PROT", set=refuse, params=[Number()])]

    picky = Picky()
    picky.write(":SENS:CURR:PROT 1e-9")
    assert (
        ask(picky, ":SYST:ERR?") == '-221,"Settings conflict;limit below 0.1% of range"'
    )
    meter.write(":READ?")
    assert ask(meter, ":SYST:ERR?") == '803,"Not permitted with OUTPUT off"'
    assert str(ScpiError(-113)) == "-113, Undefined header"


def test_error_reply_formats():
    entry = ErrorEntry(-113, "Undefined header", 1527343214.875)
    empty = ErrorEntry(0, "No error")
    assert error_reply_classic(entry) == '-113,"Undefined header"'
    assert error_reply_classic(empty) == '0,"No error"'
    assert (
        error_reply_2450(entry) == '-113,"Undefined header;1;2018/05/26 14:00:14.875"'
    )
    assert error_reply_2450(empty) == '0,"No error;0;0 0"'
    assert error_reply_keysight(entry) == '-113,"Undefined header"'
    assert error_reply_keysight(empty) == '+0,"No error"'
    assert error_reply_keysight(ErrorEntry(803, 'say "x"')) == '+803,"say ""x"""'


def test_an_instrument_picks_its_error_format_and_clock():
    class Touch(Meter):
        def clock_s(self):
            return 1527343214.875

    meter = Touch(error_format=error_reply_2450)
    assert ask(meter, ":SYST:ERR?") == '0,"No error;0;0 0"'
    meter.write(":BOGUS")
    assert (
        ask(meter, ":SYST:ERR?") == '-113,"Undefined header;1;2018/05/26 14:00:14.875"'
    )
    keysight = Meter(error_format=error_reply_keysight)
    assert ask(keysight, ":SYST:ERR?") == '+0,"No error"'


# Replies.


def test_number_formatters():
    nr3 = nr3_formatter()
    assert nr3(1e-4) == "+1.000000E-04"
    assert nr3(-21.0) == "-2.100000E+01"
    assert nr3_formatter(3, plus_sign=False)(1e-4) == "1.000E-04"
    assert nr3(float("nan")) == "9.91E+37"
    assert format_shortest(1.23456789) == "1.23456789"
    assert format_shortest(1e-7) == "1e-07"
    assert format_shortest(float("-inf")) == "-9.9E+37"
    assert format_nr1(42) == "42"
    assert format_bool(True) == "1" and format_bool(False) == "0"
    assert quote('a"b') == '"a""b"'


def test_an_instrument_formats_replies_with_its_number_format():
    meter = Meter(number_format=nr3_formatter())
    meter.write(":SOUR:VOLT 1.5;:OUTP ON")
    assert ask(meter, ":SOUR:VOLT?;:OUTP?;:TRIG:COUN?;:READ?") == (
        "+1.500000E+00;1;1;+1.500000E-06"
    )
    assert ask(meter, ":TRAC:DATA? 1,2") == "+1.000000E+00,+2.000000E+00"
    with pytest.raises(TypeError):
        meter.format_reply(object())

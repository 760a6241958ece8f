"""The run database's schema revisions (Alembic), shipped with the package.

``labctl.storage.connect`` upgrades a database to the newest revision when it
opens it. To write a new revision after changing the models::

    alembic -c labctl/migrations/alembic.ini revision --autogenerate -m "what"

with ``LABCTL_DB`` naming a database at the previous head.
"""

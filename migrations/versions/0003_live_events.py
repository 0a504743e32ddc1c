"""live events: per-channel event ids for the outbox, NOTIFY on insert

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-25

``event_outbox.seq`` is the event's id on its channel, assigned by the drain before it
publishes (so ids survive a broker that lost its data); ``event_channels`` holds each
channel's newest id. An insert into the outbox notifies ``event_outbox`` at commit, which
wakes the drain of every node.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('event_outbox', sa.Column('seq', sa.BigInteger(), nullable=True))
    op.create_index('ix_event_outbox_channel_seq', 'event_outbox', ['channel', 'seq'], unique=False)
    op.create_table('event_channels',
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('last_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('channel', name=op.f('pk_event_channels'))
    )
    op.execute("""
        CREATE FUNCTION event_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('event_outbox', '');
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER event_outbox_notify AFTER INSERT ON event_outbox
        FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_notify()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS event_outbox_notify ON event_outbox")
    op.execute("DROP FUNCTION IF EXISTS event_outbox_notify()")
    op.drop_table('event_channels')
    op.drop_index('ix_event_outbox_channel_seq', table_name='event_outbox')
    op.drop_column('event_outbox', 'seq')

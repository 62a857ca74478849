from alembic import context

connection = context.config.attributes["connection"]
# Both stores take DDL in a transaction (Alembic takes SQLite for one that does not, and would commit after each
# migration): a run of migrations in a transaction the caller began is all or nothing.
context.configure(connection=connection, render_as_batch=True, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()

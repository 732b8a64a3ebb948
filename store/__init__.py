"""The store: schema migrations, COPY writers and read queries over PostgreSQL/TimescaleDB."""

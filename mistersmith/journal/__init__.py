"""The PostgreSQL edge (psycopg 3 + psycopg_pool): migrations, event writer, replay, recovery."""

from tests.database import database_url  # noqa: F401  (fixture)

pytest_plugins = ["tests.conftest_services"]

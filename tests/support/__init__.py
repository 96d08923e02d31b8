"""Helpers shared by the tests (subprocess drivers, stand-ins); no tests here."""

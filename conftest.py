"""pytest set-up shared by the tests and the doctests in kvmlab/."""
import pytest


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    import kvmlab
    doctest_namespace["kvmlab"] = kvmlab

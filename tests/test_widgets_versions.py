"""Pitfall: if ipywidgets and jupyterlab_widgets do not match, JupyterLab shows
"Error displaying widget".  ipywidgets 8.x needs jupyterlab_widgets 3.x (7.x needs 1.x)."""
from importlib import metadata

import pytest

PAIRS = {"7": "1", "8": "3"}


def test_ipywidgets_and_jupyterlab_widgets_versions_match():
    try:
        ipyw, jlw = metadata.version("ipywidgets"), metadata.version("jupyterlab_widgets")
    except metadata.PackageNotFoundError as e:
        pytest.skip(f"{e.name} is not installed (install kvmlab[lab] for notebooks)")
    major = ipyw.split(".")[0]
    assert major in PAIRS, f"ipywidgets {ipyw} is not a version kvmlab knows"
    assert jlw.split(".")[0] == PAIRS[major], (
        f"ipywidgets {ipyw} needs jupyterlab_widgets {PAIRS[major]}.x, found {jlw}: "
        f"pip install 'jupyterlab_widgets=={PAIRS[major]}.*'")


def test_widgetsnbextension_matches_ipywidgets_for_the_classic_notebook():
    try:
        ipyw, nbx = metadata.version("ipywidgets"), metadata.version("widgetsnbextension")
    except metadata.PackageNotFoundError as e:
        pytest.skip(f"{e.name} is not installed")
    assert int(nbx.split(".")[0]) == int(ipyw.split(".")[0]) - 4   # 8.x <-> 4.x

"""The repository is set up the same way everywhere: pyproject is the one source of
dependencies, environment.yml installs from it, CI runs the README's test command."""
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_the_package_with_its_lab_extras_from_pyproject():
    env = (ROOT / "environment.yml").read_text()
    pip_lines = re.findall(r"^\s+-\s+\"?(-e [^\"\n]+)\"?$", env, re.M)
    assert pip_lines == ["-e .[lab]"], pip_lines
    assert "lab" in pyproject()["project"]["optional-dependencies"]


def test_environment_yml_names_no_dependency_of_its_own_besides_python_and_pip():
    env = (ROOT / "environment.yml").read_text()
    deps_block = env.split("dependencies:", 1)[1]
    conda_deps = re.findall(r"^  - ([A-Za-z0-9_.=<>-]+)\s*$", deps_block, re.M)
    assert {d.split("=")[0] for d in conda_deps} == {"python", "pip"}, conda_deps


def test_environment_yml_python_satisfies_requires_python():
    env = (ROOT / "environment.yml").read_text()
    ver = re.search(r"python=(\d+)\.(\d+)", env).groups()
    low = re.search(r">=(\d+)\.(\d+)", pyproject()["project"]["requires-python"]).groups()
    assert tuple(map(int, ver)) >= tuple(map(int, low))


def test_the_core_dependencies_are_the_ones_the_design_names():
    deps = {re.split(r"[<>=\[ ]", d)[0] for d in pyproject()["project"]["dependencies"]}
    assert {"numpy", "numba", "keystone-engine", "capstone"} <= deps
    extras = pyproject()["project"]["optional-dependencies"]
    names = lambda k: {re.split(r"[<>=\[ ]", d)[0] for d in extras[k]}
    assert {"jupyterlab", "ipywidgets", "matplotlib"} <= names("lab")
    assert {"pytest", "nbval", "hypothesis", "unicorn"} <= names("test")


def test_ci_runs_the_test_command_that_the_readme_gives():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash tools/test.sh" in readme
    assert "bash tools/test.sh" in ci

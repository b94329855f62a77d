"""The book's GitHub workflow runs CI in Debian with CPU-only torch and publishes to Pages; Binder gets the same torch."""

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from set_baseurl import set_baseurl  # noqa: E402

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())


def _steps(job):
    return job["steps"]


def test_runs_ci_in_a_debian_container_with_cpu_torch(workflow):
    build = workflow["jobs"]["build"]
    assert build["container"].endswith("bookworm")  # Debian 12: apt-get install chromium works as in the Makefile
    assert build["env"]["PIP_EXTRA_INDEX_URL"] == CPU_INDEX
    runs = [s.get("run", "") for s in _steps(build)]
    assert ".ci/run" in runs
    # and .ci/run is what developers run
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_deploys_the_built_html_on_pushes_to_main_only(workflow):
    on = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == ["main"]
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    upload = next(s for s in _steps(build) if str(s.get("uses", "")).startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    main_only = "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert upload["if"] == main_only and deploy["if"] == main_only
    assert deploy["needs"] == "build"
    assert any(str(s.get("uses", "")).startswith("actions/deploy-pages") for s in _steps(deploy))
    assert workflow["permissions"]["pages"] == "write" and workflow["permissions"]["id-token"] == "write"


def test_baseurl_comes_from_the_pages_url_before_the_build(workflow):
    steps = _steps(workflow["jobs"]["build"])
    names = [s.get("id") or s.get("run", "") for s in steps]
    pages = next(i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("actions/configure-pages"))
    setter = next(i for i, s in enumerate(steps) if "set_baseurl.py" in s.get("run", ""))
    ci = names.index(".ci/run")
    assert pages < setter < ci
    assert "steps.pages.outputs.base_url" in steps[setter]["run"]


def test_set_baseurl_rewrites_only_that_key():
    text = "title: x\nhtml:\n  use_issues_button: true\n# comment\n"
    out = set_baseurl(text, "https://o.github.io/r/")
    assert yaml.safe_load(out)["html"] == {"baseurl": "https://o.github.io/r/", "use_issues_button": True}
    assert "# comment" in out
    again = set_baseurl(out, "https://example.org/book/")
    assert yaml.safe_load(again)["html"]["baseurl"] == "https://example.org/book/" and again.count("baseurl") == 1
    with pytest.raises(ValueError, match="ending in '/'"):
        set_baseurl(text, "https://o.github.io/r")
    with pytest.raises(ValueError, match="html"):
        set_baseurl("title: x\n", "https://o.github.io/r/")
    # the real _config.yml has the section
    assert "baseurl" in yaml.safe_load(set_baseurl((ROOT / "_config.yml").read_text(), "https://o.github.io/r/"))["html"]


def test_binder_builds_the_same_cpu_torch_and_installs_the_library():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert f"--extra-index-url {CPU_INDEX}" in pip_section and "torch==2.13.0" in pip_section
    post_build = ROOT / "postBuild"
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable for Binder to run it"
    assert "pip install --no-deps -e ." in post_build.read_text()
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert config["repository"]["url"].startswith("https://github.com/")

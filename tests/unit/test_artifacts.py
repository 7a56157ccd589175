"""The contract artifacts are package data equal to a fresh compile with the pinned solc (solcjs, or a
native solc of exactly that version)."""

from __future__ import annotations

import hashlib
import json
import stat
import sys
from pathlib import Path

import pytest

import fl_chain
from fl_chain.chain.artifacts import ARTIFACTS_ENV, load_artifact
from fl_chain.chain.compile import ARTIFACTS_DIR, SOLC_ENV, SOLC_VERSION, compile_contracts, main
from fl_chain.errors import CompilerError

COMMITTED = ARTIFACTS_DIR / "FLCoordinator.json"


def _fake_native_solc(tmp_path: Path, *, version: str) -> Path:
    """A stand-in for a native solc: reports ``version`` and answers --standard-json with the committed
    artifact's compiler output (after checking it was given the standard-JSON input)."""
    script = tmp_path / "solc"
    script.write_text(
        f"""#!{sys.executable}
import json, sys
if sys.argv[1:] == ["--version"]:
    print("solc, the solidity compiler commandline interface")
    print("Version: {version}+commit.7893614a.Linux.g++")
    sys.exit(0)
assert sys.argv[1:] == ["--standard-json"], sys.argv
request = json.load(sys.stdin)
assert request["language"] == "Solidity" and "FLCoordinator.sol" in request["sources"], request.keys()
artifact = json.loads(open({str(COMMITTED)!r}).read())
compiled = {{
    "abi": artifact["abi"],
    "evm": {{
        "bytecode": {{"object": artifact["bytecode"][2:]}},
        "deployedBytecode": {{"object": artifact["deployedBytecode"][2:]}},
    }},
}}
print(json.dumps({{"contracts": {{"FLCoordinator.sol": {{"FLCoordinator": compiled}}}}}}))
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


@pytest.fixture
def fresh_artifact_cache():  # type: ignore[no-untyped-def]
    load_artifact.cache_clear()
    yield
    load_artifact.cache_clear()


def test_committed_artifact_matches_fresh_compile() -> None:
    """ABI, bytecode, settings and compiler version in the package's artifact equal a fresh solcjs compile."""
    # Prepare
    committed = json.loads(COMMITTED.read_text())

    # Execute
    fresh = compile_contracts()["FLCoordinator"]

    # Assert
    assert fresh["compiler"]["version"].startswith(SOLC_VERSION + "+commit.")
    for key in ("abi", "bytecode", "deployedBytecode", "sourceSha256"):
        assert fresh[key] == committed[key], f"{key} differs: run python scripts/compile_contracts.py"
    assert fresh["compiler"]["version"] == committed["compiler"]["version"]
    assert fresh["compiler"]["settings"] == committed["compiler"]["settings"]


def test_compile_writes_the_artifact_that_is_loaded_from_the_package(fresh_artifact_cache: None) -> None:
    # Execute
    artifact = load_artifact()

    # Assert
    assert ARTIFACTS_DIR.resolve().is_relative_to(Path(fl_chain.__file__).resolve().parent)
    assert artifact.sha256 == hashlib.sha256(COMMITTED.read_bytes()).hexdigest()


def test_artifacts_env_overrides_the_packaged_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_artifact_cache: None
) -> None:
    # Prepare
    data = json.loads(COMMITTED.read_text())
    data["bytecode"] = "0x00"
    (tmp_path / "FLCoordinator.json").write_text(json.dumps(data))
    monkeypatch.setenv(ARTIFACTS_ENV, str(tmp_path))

    # Execute
    artifact = load_artifact()

    # Assert
    assert artifact.bytecode == "0x00"


def test_artifacts_env_without_the_artifact_is_a_compiler_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_artifact_cache: None
) -> None:
    monkeypatch.setenv(ARTIFACTS_ENV, str(tmp_path))
    with pytest.raises(CompilerError, match=ARTIFACTS_ENV):
        load_artifact()


def test_native_solc_of_the_pinned_version_gives_the_committed_artifact(tmp_path: Path) -> None:
    # Prepare
    solc = _fake_native_solc(tmp_path, version=SOLC_VERSION)
    committed = json.loads(COMMITTED.read_text())

    # Execute
    fresh = compile_contracts(str(solc))["FLCoordinator"]

    # Assert
    assert fresh["compiler"]["name"] == "solc"
    assert fresh["compiler"]["version"] == committed["compiler"]["version"]
    assert {k: v for k, v in fresh.items() if k != "compiler"} == {
        k: v for k, v in committed.items() if k != "compiler"
    }


def test_compile_script_check_passes_with_native_solc_option(tmp_path: Path) -> None:
    solc = _fake_native_solc(tmp_path, version=SOLC_VERSION)
    assert main(["--check", "--solc", str(solc)]) == 0


def test_native_solc_of_another_version_is_refused_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SOLC_ENV, str(_fake_native_solc(tmp_path, version="0.8.20")))
    with pytest.raises(CompilerError, match=rf"solc 0\.8\.20\+commit\.7893614a.*not the pinned {SOLC_VERSION}"):
        compile_contracts()


def test_compile_script_reports_a_missing_native_solc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code = main(["--check", "--solc", str(tmp_path / "no-such-solc")])

    # Assert
    assert code == 1
    err = capsys.readouterr().err
    assert "no executable solc" in err and "--solc PATH" in err and err.count("\n") == 1


def test_solcx_option_without_py_solc_x_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "solcx", None)  # import solcx -> ImportError
    with pytest.raises(CompilerError, match="pip install py-solc-x"):
        compile_contracts("solcx")


def test_artifact_declares_prefixed_custom_errors_and_past_tense_events() -> None:
    """Every custom error carries the contract prefix; events are named in the past tense."""
    # Prepare
    abi = load_artifact().abi

    # Execute
    errors = [item["name"] for item in abi if item["type"] == "error"]
    events = [item["name"] for item in abi if item["type"] == "event"]

    # Assert
    assert errors and all(name.startswith("FLCoordinator") for name in errors)
    assert events and all(name.endswith(("ed", "Drawn")) for name in events), events  # "Drawn": irregular

"""docker-compose.yml, checked without a Docker engine: it parses, binds to 127.0.0.1, starts in order,
takes its secrets from .env, and its commands use the variables and options the code really reads."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def env_example() -> dict[str, str]:
    pairs = [
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {k: v for k, v in pairs}


def substitute(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR} / ${VAR:-default} / $$ interpolation."""
    text = re.sub(
        r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1)) or (m.group(2) or ""), text
    )
    return text.replace("$$", "$")


def test_services_and_start_up_order():
    assert set(SERVICES) == {"postgres", "mlflow", "optuna-dashboard", "worker"}
    assert "healthcheck" in SERVICES["postgres"] and "healthcheck" in SERVICES["mlflow"]
    assert SERVICES["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["worker"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "mlflow": {"condition": "service_healthy"},
    }
    # The worker is built from the project's own Dockerfile, so `--scale worker=N` runs this code.
    assert SERVICES["worker"]["build"] == "." and (REPO / "Dockerfile").is_file()
    # scaled workers publish nothing
    assert "worker" not in str(SERVICES["worker"].get("ports", ""))


def test_ports_are_bound_to_localhost_only():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (
                f"{name} publishes {port} beyond this machine"
            )


def test_credentials_come_from_env_and_none_are_committed():
    used = set(re.findall(r"\$\{(\w+)(?::-[^}]*)?\}", (REPO / "docker-compose.yml").read_text()))
    assert used <= set(env_example()), f"not in .env.example: {used - set(env_example())}"
    tracked = subprocess.run(
        ["git", "ls-files", ".env"], cwd=REPO, capture_output=True, text=True
    ).stdout
    assert tracked == "" and ".env" in (REPO / ".gitignore").read_text().split()
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD}"
    assert env_example()["POSTGRES_PASSWORD"] not in (REPO / "docker-compose.yml").read_text()


def test_worker_uses_the_variables_the_code_reads(monkeypatch):
    from workbench.studies import storage, sweep
    from workbench.tracking import store

    env = SERVICES["worker"]["environment"]
    assert set(env) == {"MLFLOW_TRACKING_URI", "OPTUNA_STORAGE"}
    values = {k: substitute(v, env_example()) for k, v in env.items()}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    assert store.tracking_uri() == "http://mlflow:5000"
    assert storage.default_storage() == values["OPTUNA_STORAGE"]
    # the database the init script creates
    assert values["OPTUNA_STORAGE"].endswith("@postgres:5432/optuna")
    assert "CREATE DATABASE optuna" in (REPO / "docker" / "postgres-init.sql").read_text()
    # The worker's command line is one the sweep accepts.
    argv = shlex.split(substitute(SERVICES["worker"]["command"], env_example()))
    assert argv[:3] == ["python", "-m", "workbench.sweep"]
    args = sweep.parse_args(argv[3:])
    assert args.trials == int(env_example()["TRIALS"]) and args.study == env_example()["STUDY"]
    assert args.worker_index == "auto"  # each scaled worker seeds its sampler differently


def test_mlflow_server_command_uses_real_options():
    argv = shlex.split(substitute(SERVICES["mlflow"]["command"], env_example()))
    assert argv[:2] == ["mlflow", "server"]
    help_text = subprocess.run(
        [sys.executable, "-m", "mlflow", "server", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in (a for a in argv if a.startswith("--")):
        assert option in help_text, f"mlflow server has no {option}"
    backend = argv[argv.index("--backend-store-uri") + 1]
    assert backend.startswith("postgresql+psycopg://") and backend.endswith("@postgres:5432/mlflow")
    assert "--serve-artifacts" in argv and "mlflow:5000" in argv[argv.index("--allowed-hosts") + 1]


def test_the_docs_match_the_compose_file():
    assert "docker compose up" in (REPO / "README.md").read_text()
    readme = (REPO / "docs" / "multi-machine.md").read_text()
    assert "docker compose up" in readme and "--scale worker=" in readme
    env = env_example()
    for port_var in ("MLFLOW_PORT", "OPTUNA_DASHBOARD_PORT"):
        assert f"127.0.0.1:{env[port_var]}" in readme
    for service in SERVICES:
        assert f"`{service}`" in readme, f"README does not describe the {service} service"


def test_dockerfile_installs_what_the_services_run():
    assert 'pip install ".[server]"' in (REPO / "Dockerfile").read_text()
    assert re.search(
        r"^server = \[.*optuna-dashboard==", (REPO / "pyproject.toml").read_text(), re.M
    )
    commands = [str(s.get("command", "")) for s in SERVICES.values()]
    assert any(c.startswith("optuna-dashboard ") for c in commands) and any(
        c.startswith("mlflow server") for c in commands
    )

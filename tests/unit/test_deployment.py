"""docker-compose.yml and deploy/Dockerfile, checked without a Docker engine.

No machine here can run a container or `docker compose config`, so a broken deployment
would only show on a Docker user's machine. Each rule below is a function returning the
problems it finds; it is run on the committed files (no problem) and on a deliberately
broken copy (the problem is found), so a rule that stops looking fails its own test.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import typer.main
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import ValidationError

from privops.adapters.settings import DEV_SECRETS, Settings
from privops.core.errors import ConfigError
from tests.unit.lockfile import read_lock

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
LOCK = ROOT / "requirements" / "runtime.lock"
ENV_EXAMPLES = sorted((ROOT / "deploy" / "compose").glob("*.env.example"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]

WORKER = "worker"
SECRETS = ("PRIVOPS_PSEUDONYM_KEY", "PRIVOPS_AUDIT_KEY")
VARIABLE = re.compile(r"(?<!\$)\$(?:\{(?P<braced>\w+)(?P<rest>[^}]*)\}|(?P<bare>[A-Za-z_]\w*))")
REQUIRED = re.compile(r"^\$\{(\w+):?\?[^}]+\}$")
SAMPLE_SECRET = "sample-secret-for-the-deployment-test"

Compose = dict[str, Any]


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Dockerfile:
    """The instructions of a Dockerfile, continuation lines joined, comments dropped."""

    instructions: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        joined = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
        out = []
        for line in joined.splitlines():
            word, _, rest = line.strip().partition(" ")
            if word and not word.startswith("#"):
                out.append((word.upper(), rest.strip()))
        return cls(tuple(out))

    def final_stage(self) -> list[tuple[str, str]]:
        start = max(i for i, (word, _) in enumerate(self.instructions) if word == "FROM")
        return list(self.instructions[start:])

    def env(self) -> dict[str, str]:
        pairs = (p for word, rest in self.final_stage() if word == "ENV" for p in shlex.split(rest))
        return dict(pair.split("=", 1) for pair in pairs)

    def last(self, word: str) -> str | None:
        found = [rest for w, rest in self.final_stage() if w == word]
        return found[-1] if found else None

    def command(self) -> list[str]:
        raw = self.last("CMD") or ""
        return list(yaml.safe_load(raw)) if raw.startswith("[") else shlex.split(raw)

    def base_images(self) -> list[str]:
        args = dict(
            rest.split("=", 1) for word, rest in self.instructions if word == "ARG" and "=" in rest
        )
        bases = (rest.split()[0] for word, rest in self.instructions if word == "FROM")
        return [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), base) for base in bases]


class _StrictLoader(yaml.SafeLoader):
    """A mapping key given twice is an error, as `docker compose` (Go yaml v3) makes it;
    PyYAML would keep the last one silently."""


def _no_duplicate_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[str] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
            continue
        if key_node.value in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"mapping key {key_node.value!r} already defined", key_node.start_mark
            )
        seen.add(key_node.value)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _no_duplicate_keys,
)


def load_compose(text: str | None = None) -> Compose:
    data: Compose = yaml.load(text or COMPOSE.read_text(), Loader=_StrictLoader)
    return data


def test_a_key_given_twice_in_compose_is_refused_as_compose_refuses_it() -> None:
    load_compose()  # the real file has none
    with pytest.raises(yaml.constructor.ConstructorError, match="stop_grace_period"):
        load_compose("services:\n  w:\n    stop_grace_period: 50s\n    stop_grace_period: 30s\n")


def load_dockerfile() -> Dockerfile:
    return Dockerfile.parse(DOCKERFILE.read_text())


def strings(node: Any) -> list[str]:
    """Every string value (and mapping key) in a parsed YAML tree: where $VARs can hide."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*strings(k), *strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def environment(service: Compose) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def mounts(service: Compose) -> list[tuple[str, str]]:
    """(source, target) of each volume entry, short or long syntax."""
    out = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            out.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            source, target, *_ = str(entry).split(":")
            out.append((source, target))
    return out


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~")) or is_host_path_variable(source)


def is_host_path_variable(source: str) -> bool:
    """A bind mount of a host path the operator gives (``${PRIVOPS_KEK_DIR:?...}``)."""
    return source.startswith("${")


def privops_services(compose: Compose) -> list[str]:
    """Services running the privops image (built from deploy/Dockerfile)."""
    return [
        name
        for name, service in compose["services"].items()
        if (service.get("build") or {}).get("dockerfile") == "deploy/Dockerfile"
    ]


def effective_env(compose: Compose, name: str, image: Dockerfile) -> dict[str, str]:
    return {**image.env(), **environment(compose["services"][name])}


def host_path(service: Compose, container_path: str) -> Path | None:
    """The repository file a bind mount puts at `container_path`, if any."""
    wanted = PurePosixPath(container_path)
    for source, target in mounts(service):
        if is_bind(source) and wanted.is_relative_to(target):
            return ROOT / source / wanted.relative_to(target)
    return None


def flag(service: Compose, name: str) -> str | None:
    for arg in service.get("command") or []:
        if str(arg).startswith(f"{name}="):
            return str(arg).split("=", 1)[1]
    return None


def header_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def example_variables() -> set[str]:
    return {
        line.split("=", 1)[0].strip()
        for path in ENV_EXAMPLES
        for line in path.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }


# ----------------------------------------------------------------------------- rules


def missing_files(compose: Compose) -> list[str]:
    """Every file or directory compose builds from or bind-mounts is in the repository."""
    problems = []
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = ROOT / build.get("context", ".")
            for path in (context, context / build.get("dockerfile", "Dockerfile")):
                if not path.exists():
                    problems.append(f"{name}: builds from missing {path.relative_to(ROOT)}")
        for source, _ in mounts(service):
            if (
                is_bind(source)
                and not is_host_path_variable(source)
                and not (ROOT / source).exists()
            ):
                problems.append(f"{name}: mounts missing {source}")
    return problems


def undeclared_volumes(compose: Compose) -> list[str]:
    declared = set(compose.get("volumes") or {})
    return [
        f"{name}: named volume {source!r} is not declared under volumes:"
        for name, service in compose["services"].items()
        for source, _ in mounts(service)
        if source and not is_bind(source) and source not in declared
    ]


def undocumented_variables(compose: Compose, header: str, examples: set[str]) -> list[str]:
    """Each ${VAR} compose reads is explained in its header or in an .env.example."""
    used = {m["braced"] or m["bare"] for s in strings(compose) for m in VARIABLE.finditer(s)}
    return [
        f"${{{var}}} is not documented"
        for var in sorted(used)
        if var not in examples and not re.search(rf"\b{var}\b", header)
    ]


def unknown_settings(compose: Compose, image: Dockerfile) -> list[str]:
    """Every PRIVOPS_* a privops container gets is a real Settings field (no silent typo)."""
    fields = set(Settings.model_fields)
    problems = []
    for name in privops_services(compose):
        for var in effective_env(compose, name, image):
            if var.startswith("PRIVOPS_") and var.removeprefix("PRIVOPS_").lower() not in fields:
                problems.append(f"{name}: {var} is not a privops setting")
    return problems


def invalid_settings(compose: Compose, image: Dockerfile) -> list[str]:
    """Each privops container's settings validate, with the required secrets filled in;
    the worker's also hold privops' own secrets (``require_secrets``: it hashes and signs
    with them; a connector holds none)."""
    problems = []
    for name in privops_services(compose):
        values = {
            var.removeprefix("PRIVOPS_").lower(): SAMPLE_SECRET if REQUIRED.match(v) else v
            for var, v in effective_env(compose, name, image).items()
            if var.startswith("PRIVOPS_")
        }
        try:
            settings = Settings.model_validate(values)
        except ValidationError as exc:
            problems.append(f"{name}: {exc.errors()[0]['msg']}")
            continue
        if name == WORKER:
            try:
                settings.require_secrets()
            except ConfigError as exc:
                problems.append(f"{name}: {exc}")
    return problems


def worker_problems(compose: Compose, image: Dockerfile) -> list[str]:
    """Production profile, secrets only from the environment, web reachable from outside."""
    env = effective_env(compose, WORKER, image)
    problems = [
        f"worker: {s} must be ${{{s}:?message}}"
        for s in SECRETS
        if not REQUIRED.match(env.get(s, ""))
    ]
    if env.get("PRIVOPS_ENV") != "prod":
        problems.append("worker: PRIVOPS_ENV is not prod")
    if env.get("PRIVOPS_WEB_HOST") != "0.0.0.0":
        problems.append("worker: PRIVOPS_WEB_HOST is not 0.0.0.0: the port mapping reaches nothing")
    port = env.get("PRIVOPS_WEB_PORT", str(Settings.model_fields["web_port"].default))
    published = [
        str(p).split(":")[-1].split("/")[0] for p in compose["services"][WORKER].get("ports", [])
    ]
    if port not in published:
        problems.append(f"worker: web port {port} is not published (ports: {published})")
    return problems


def kafka_protocol_problems(compose: Compose, image: Dockerfile) -> list[str]:
    """Each privops service speaks the protocol of the broker listener it connects to (a
    SASL client to a PLAINTEXT listener never connects), and a production worker on
    PLAINTEXT Kafka says it may (PRIVOPS_KAFKA_PLAINTEXT=allow: it refuses to start
    otherwise)."""
    kafka = environment(compose["services"]["kafka"])
    listeners = dict(
        item.split(":", 1) for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    by_port = {
        entry.rsplit(":", 1)[1]: name.strip()
        for name, _, entry in (
            item.partition("://") for item in kafka["KAFKA_LISTENERS"].split(",")
        )
    }
    problems = []
    for name, service in compose["services"].items():
        env = effective_env(compose, name, image)
        bootstrap = env.get("PRIVOPS_KAFKA_BOOTSTRAP")
        if not bootstrap or not str(service.get("image", "")).startswith("privops"):
            continue
        listener = by_port.get(bootstrap.rsplit(":", 1)[1], "")
        wanted = listeners.get(listener)
        protocol = env.get(
            "PRIVOPS_KAFKA_SECURITY_PROTOCOL",
            str(Settings.model_fields["kafka_security_protocol"].default),
        )
        if protocol != wanted:
            problems.append(f"{name}: speaks {protocol} to the {listener} listener ({wanted})")
        plaintext_prod = protocol == "PLAINTEXT" and env.get("PRIVOPS_ENV") == "prod"
        if plaintext_prod and env.get("PRIVOPS_KAFKA_PLAINTEXT") != "allow":
            problems.append(f"{name}: PLAINTEXT Kafka in prod without PRIVOPS_KAFKA_PLAINTEXT")
    return problems


def kafka_problems(compose: Compose) -> list[str]:
    """The broker's log (privacy.audit included) lives on a declared named volume."""
    kafka = compose["services"]["kafka"]
    log_dirs = environment(kafka).get("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs")
    on_volume = [
        source
        for source, target in mounts(kafka)
        if not is_bind(source) and PurePosixPath(log_dirs).is_relative_to(target)
    ]
    if not on_volume:
        return [f"kafka: KAFKA_LOG_DIRS={log_dirs} is not on a named volume"]
    return [
        f"kafka: volume {v} is not declared"
        for v in on_volume
        if v not in (compose.get("volumes") or {})
    ]


def grafana_problems(compose: Compose) -> list[str]:
    env = environment(compose["services"]["grafana"])
    password = env.get("GF_SECURITY_ADMIN_PASSWORD", "")
    if not REQUIRED.match(password):
        return [
            "grafana: GF_SECURITY_ADMIN_PASSWORD must be a required ${VAR:?message}, not a default"
        ]
    return []


def alertmanager_problems(compose: Compose) -> list[str]:
    """Alertmanager's config is in the repository, parses, and routes to declared receivers."""
    service = compose["services"]["alertmanager"]
    path = host_path(
        service, flag(service, "--config.file") or "/etc/alertmanager/alertmanager.yml"
    )
    if path is None or not path.is_file():
        return [f"alertmanager: config file not found in the repository ({path})"]
    config = yaml.safe_load(path.read_text())
    declared = {r["name"] for r in config.get("receivers") or []}
    routes = [config["route"], *config["route"].get("routes", [])]
    return [
        f"alertmanager: route to undeclared receiver {r.get('receiver')!r}"
        for r in routes
        if r.get("receiver", config["route"]["receiver"]) not in declared
    ]


def prometheus_config_problems(
    config: dict[str, Any], where: str, rules: list[Path | None], alertmanager: str, worker: str
) -> list[str]:
    """A Prometheus config loads privops' rules, sends what fires to ``alertmanager`` and
    scrapes ``worker``. Both configs are held to it: compose's, and the standalone
    deploy/prometheus/prometheus.yml the README gives operators, which had no
    ``alerting:`` block, so its alerts reached no Alertmanager (review, session 44)."""
    problems = (
        []
        if ROOT / "deploy/prometheus/alerts.yml" in rules
        else [f"{where}: deploy/prometheus/alerts.yml is not loaded"]
    )
    managers = [
        t
        for am in (config.get("alerting") or {}).get("alertmanagers", [])
        for sc in am.get("static_configs", [])
        for t in sc["targets"]
    ]
    if alertmanager not in managers:
        problems.append(f"{where}: alerts do not go to {alertmanager} ({managers})")
    if worker not in prometheus_jobs(config).get("privops-worker", []):
        problems.append(f"{where}: job privops-worker does not scrape {worker}")
    return problems


def prometheus_jobs(config: dict[str, Any]) -> dict[str, list[str]]:
    return {
        job["job_name"]: [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        for job in config.get("scrape_configs", [])
    }


def standalone_prometheus_problems(config: dict[str, Any]) -> list[str]:
    """deploy/prometheus/prometheus.yml: the worker on loopback, and an Alertmanager."""
    rules: list[Path | None] = [PROMETHEUS.parent / r for r in config.get("rule_files", [])]
    return prometheus_config_problems(
        config, "deploy/prometheus/prometheus.yml", rules, "127.0.0.1:9093", "127.0.0.1:6066"
    )


def prometheus_problems(compose: Compose) -> list[str]:
    """Prometheus loads privops' rules, alerts the Alertmanager service, scrapes the worker."""
    service = compose["services"]["prometheus"]
    config_at = PurePosixPath(flag(service, "--config.file") or "/etc/prometheus/prometheus.yml")
    path = host_path(service, str(config_at))
    if path is None or not path.is_file():
        return [f"prometheus: config {config_at} is not mounted from the repository"]
    config = yaml.safe_load(path.read_text())
    rules = [host_path(service, str(config_at.parent / r)) for r in config.get("rule_files", [])]
    port = environment(compose["services"][WORKER]).get("PRIVOPS_WEB_PORT", "6066")
    problems = prometheus_config_problems(
        config, "prometheus", rules, "alertmanager:9093", f"{WORKER}:{port}"
    )
    jobs = prometheus_jobs(config)
    # The connector alerts read the connectors' metrics only: scraped where they listen.
    command = [str(word) for word in compose["services"]["connectors"].get("command", [])]
    listens = flag_value(command, "--metrics-port")
    wanted = f"connectors:{listens}"
    if listens is None or flag_value(command, "--metrics-host") != "0.0.0.0":
        problems.append("connectors: no --metrics-port on 0.0.0.0 (Prometheus cannot scrape it)")
    elif wanted not in jobs.get("privops-connectors", []):
        problems.append(f"prometheus: job privops-connectors does not scrape {wanted} ({jobs})")
    return problems


def flag_value(command: list[str], name: str) -> str | None:
    """The word after ``name`` in ``command`` (None if absent)."""
    return command[command.index(name) + 1] if name in command[:-1] else None


def dockerfile_problems(image: Dockerfile) -> list[str]:
    """Non-root, production profile, pinned base, health probe, the wheel and not the tree."""
    problems = []
    user = (image.last("USER") or "root").split(":")[0]
    if user in ("root", "0"):
        problems.append(f"Dockerfile: the image runs as {user}")
    if image.env().get("PRIVOPS_ENV") != "prod":
        problems.append("Dockerfile: PRIVOPS_ENV is not prod")
    problems += [
        f"Dockerfile: base {b} is not pinned by digest"
        for b in image.base_images()
        if "@sha256:" not in b
    ]
    # Liveness, not readiness: /health is 503 while tables recover, and a container
    # restarted for that starts its recovery over (review, session 44).
    if "/livez" not in (image.last("HEALTHCHECK") or ""):
        problems.append("Dockerfile: no HEALTHCHECK on /livez")
    sources = [rest for word, rest in image.final_stage() if word in ("COPY", "ADD")]
    problems += [
        f"Dockerfile: the runtime stage copies {s!r} from the build context"
        for s in sources
        if "--from=" not in s
    ]
    installs = " ".join(rest for word, rest in image.instructions if word == "RUN")
    for needed in ("requirements/runtime.lock", "--no-index"):
        if needed not in installs:
            problems.append(f"Dockerfile: dependencies are not installed with {needed}")
    return problems


def command_problems(args: list[str], where: str) -> list[str]:
    """`args` is a console script of this package and every sub-command and option exists."""
    if not args or args[0] not in SCRIPTS:
        return [f"{where}: {args[:1]} is not a console script of pyproject.toml"]
    module, _, attr = SCRIPTS[args[0]].partition(":")
    # Typer may vendor click: walk the command tree by its attributes, not its classes.
    command: Any = typer.main.get_command(getattr(importlib.import_module(module), attr))
    tokens = iter(args[1:])
    for token in tokens:
        if token.startswith("-"):
            option = next(
                (p for p in command.params if token.split("=")[0] in (*p.opts, *p.secondary_opts)),
                None,
            )
            if option is None:
                return [f"{where}: {command.name} has no option {token}"]
            if not getattr(option, "is_flag", False) and "=" not in token:
                next(tokens, None)
        elif token in getattr(command, "commands", {}):
            command = command.commands[token]
        else:
            return [f"{where}: {command.name} has no command {token!r}"]
    return []


def container_commands(compose: Compose, image: Dockerfile) -> list[str]:
    problems = command_problems(image.command(), "Dockerfile CMD")
    for name in privops_services(compose):
        args = compose["services"][name].get("command")
        if args is not None:
            problems += command_problems([str(a) for a in args], name)
    return problems


def ignored_sources(image: Dockerfile, ignore: list[str]) -> list[str]:
    """What the Dockerfile copies from the context exists and is not filtered out."""
    problems = []
    for word, rest in image.instructions:
        parts = rest.split()
        if word not in ("COPY", "ADD") or any(p.startswith("--from=") for p in parts):
            continue
        for source in (p for p in parts[:-1] if not p.startswith("--")):
            if not (ROOT / source).exists():
                problems.append(f"Dockerfile copies missing {source}")
            elif any(fnmatch.fnmatch(source, pattern.removeprefix("**/")) for pattern in ignore):
                problems.append(f"Dockerfile copies {source}, which its .dockerignore excludes")
    return problems


def lock_pins(text: str) -> dict[str, str]:
    return {name: pin.version for name, pin in read_lock(text).pins.items()}


def lock_problems(text: str) -> list[str]:
    """The image's lock pins every runtime requirement, at a version pyproject allows.

    Transitive requirements are read from the venv's metadata, and only for packages
    installed at the pinned version, so a newer venv never makes this rule guess.
    """
    pins = lock_pins(text)
    wanted = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for name, version in pins.items():
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        if dist.version == version:
            wanted += [Requirement(r) for r in dist.requires or []]
    problems = [f"lock: {name} is not pinned with ==" for name, v in pins.items() if not v]
    for req in wanted:
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"lock: {req.name} is not pinned")
        elif pinned and not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"lock: {req.name}=={pinned} does not satisfy {req}")
    return sorted(set(problems))


# ----------------------------------------------------------------------------- tests


def committed() -> tuple[Compose, Dockerfile]:
    return load_compose(), load_dockerfile()


def dockerignore() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


Rule = Callable[[Compose, Dockerfile], list[str]]

RULES: dict[str, Rule] = {
    "missing-files": lambda c, _: missing_files(c),
    "undeclared-volumes": lambda c, _: undeclared_volumes(c),
    "undocumented-variables": lambda c, _: undocumented_variables(
        c, header_comment(COMPOSE.read_text()), example_variables()
    ),
    "unknown-settings": unknown_settings,
    "invalid-settings": invalid_settings,
    "worker": worker_problems,
    "kafka": lambda c, _: kafka_problems(c),
    "kafka-protocol": kafka_protocol_problems,
    "grafana": lambda c, _: grafana_problems(c),
    "alertmanager": lambda c, _: alertmanager_problems(c),
    "prometheus": lambda c, _: prometheus_problems(c),
    "prometheus-standalone": lambda _c, _d: standalone_prometheus_problems(
        yaml.safe_load(PROMETHEUS.read_text())
    ),
    "dockerfile": lambda _, d: dockerfile_problems(d),
    "commands": container_commands,
    "dockerignore": lambda _, d: ignored_sources(d, dockerignore()),
    "lock": lambda _c, _d: lock_problems(LOCK.read_text()),
    "logs": lambda c, _: log_problems(c),
}


def log_problems(compose: Compose) -> list[str]:
    """Every container's log is rotated: Docker's default json-file log grows without
    limit (ops review, session 33)."""
    problems = []
    for name, service in compose["services"].items():
        options = (service.get("logging") or {}).get("options") or {}
        if not options.get("max-size") or not options.get("max-file"):
            problems.append(f"{name}: its log is not rotated (logging.options max-size/file)")
    return problems


@pytest.mark.parametrize("rule", RULES)
def test_the_committed_deployment_keeps_the_rule(rule: str) -> None:
    assert RULES[rule](*committed()) == []


def test_compose_runs_the_whole_topology() -> None:
    services = load_compose()["services"]
    expected = {
        "kafka",
        "schema-registry",
        WORKER,
        "connectors",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    assert expected <= set(services)
    assert services["connectors"]["command"][:2] == ["privops", "simulate"]
    assert "--no-events" in services["connectors"]["command"]


def _service(name: str, change: Callable[[Compose], object]) -> Callable[[Compose], None]:
    def apply(compose: Compose) -> None:
        change(compose["services"][name])

    return apply


def _env(name: str, var: str, value: str | None) -> Callable[[Compose], None]:
    def apply(compose: Compose) -> None:
        env = compose["services"][name].setdefault("environment", {})
        if value is None:
            env.pop(var, None)
        else:
            env[var] = value

    return apply


def _each(*changes: Callable[[Compose], None]) -> Callable[[Compose], None]:
    def apply(compose: Compose) -> None:
        for change in changes:
            change(compose)

    return apply


# (rule, how the compose file is broken); each must make its rule report a problem.
BROKEN_COMPOSE: list[tuple[str, Callable[[Compose], None]]] = [
    (
        "missing-files",
        _service("prometheus", lambda s: s["volumes"].append("./deploy/nope.yml:/x:ro")),
    ),
    ("missing-files", _service(WORKER, lambda s: s["build"].update(dockerfile="deploy/Nope"))),
    ("undeclared-volumes", lambda c: c["volumes"].pop("kafka-data")),
    ("undocumented-variables", _env("grafana", "GF_SERVER_ROOT_URL", "${GRAFANA_URL}")),
    ("unknown-settings", _env(WORKER, "PRIVOPS_WEBPORT", "6066")),
    ("invalid-settings", _env(WORKER, "PRIVOPS_AUDIT_KEY", None)),
    (
        "invalid-settings",
        _each(
            _env("connectors", "PRIVOPS_ENV", "prod"),
            _env("connectors", "PRIVOPS_AUDIT_KEY", DEV_SECRETS["audit_key"]),
        ),
    ),
    ("worker", _env(WORKER, "PRIVOPS_WEB_HOST", "127.0.0.1")),
    ("worker", _env(WORKER, "PRIVOPS_WEB_PORT", "6067")),
    ("worker", _env(WORKER, "PRIVOPS_AUDIT_KEY", "a-literal-audit-key-in-the-file")),
    ("worker", _env(WORKER, "PRIVOPS_ENV", "dev")),
    ("kafka", _service("kafka", lambda s: s.pop("volumes"))),
    ("kafka-protocol", _env(WORKER, "PRIVOPS_KAFKA_PLAINTEXT", None)),
    ("kafka-protocol", _env("connectors", "PRIVOPS_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")),
    ("kafka", _env("kafka", "KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs")),
    ("grafana", _env("grafana", "GF_SECURITY_ADMIN_PASSWORD", "admin")),
    ("grafana", _env("grafana", "GF_SECURITY_ADMIN_PASSWORD", "${GRAFANA_ADMIN_PASSWORD:-admin}")),
    ("alertmanager", _service("alertmanager", lambda s: s.update(volumes=[]))),
    (
        "alertmanager",
        _service(
            "alertmanager", lambda s: s.update(command=["--config.file=/etc/alertmanager/x.yml"])
        ),
    ),
    ("prometheus", _service("prometheus", lambda s: s["volumes"].pop(1))),
    ("prometheus", _service("connectors", lambda s: s.update(command=s["command"][:3]))),
    ("prometheus", _service("prometheus", lambda s: s.update(volumes=s["volumes"][2:]))),
    (
        "commands",
        _service("connectors", lambda s: s.update(command=["privops", "simulate", "--quiet"])),
    ),
    ("commands", _service("connectors", lambda s: s.update(command=["privops", "connectors"]))),
    ("commands", _service("connectors", lambda s: s.update(command=["python", "-m", "privops"]))),
    ("logs", _service("grafana", lambda s: s.pop("logging"))),
]


@pytest.mark.parametrize(
    ("rule", "breakage"),
    BROKEN_COMPOSE,
    ids=[f"{r}-{i}" for i, (r, _) in enumerate(BROKEN_COMPOSE)],
)
def test_a_broken_compose_file_is_caught(rule: str, breakage: Callable[[Compose], None]) -> None:
    compose, image = committed()
    broken = copy.deepcopy(compose)
    breakage(broken)
    assert RULES[rule](broken, image) != []


def _no_alerting(config: dict[str, Any]) -> None:
    config.pop("alerting")


def _no_rules(config: dict[str, Any]) -> None:
    config["rule_files"] = []


def _other_worker(config: dict[str, Any]) -> None:
    config["scrape_configs"][0]["static_configs"] = [{"targets": ["127.0.0.1:7000"]}]


@pytest.mark.parametrize("breakage", [_no_alerting, _no_rules, _other_worker])
def test_a_broken_standalone_prometheus_config_is_caught(
    breakage: Callable[[dict[str, Any]], None],
) -> None:
    """The config the README gives operators outside compose alerts an Alertmanager
    (review, session 44: it had no ``alerting:`` block)."""
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert standalone_prometheus_problems(config) == []
    breakage(config)
    assert standalone_prometheus_problems(config) != []


# (rule, text in deploy/Dockerfile, what it is replaced with)
BROKEN_DOCKERFILE = [
    ("dockerfile", "USER 10001:10001", "USER root"),
    ("dockerfile", "USER 10001:10001", ""),
    ("dockerfile", "PRIVOPS_ENV=prod", "PRIVOPS_ENV=dev"),
    ("dockerfile", "python:3.11-slim@sha256:", "python:3.11-slim#"),
    ("dockerfile", "/livez", "/metrics"),
    ("dockerfile", "/livez", "/health"),
    ("dockerfile", "COPY --from=builder /opt/privops /opt/privops", "COPY privops /opt/privops"),
    ("dockerfile", "--no-index ", ""),
    ("commands", 'CMD ["privops", "worker"]', 'CMD ["privops-worker"]'),
    ("commands", 'CMD ["privops", "worker"]', 'CMD ["privops", "wrker"]'),
    ("dockerignore", "COPY schemas schemas", "COPY tests tests"),
    ("dockerignore", "COPY agents agents", "COPY agent agents"),
]


@pytest.mark.parametrize(
    ("rule", "old", "new"),
    BROKEN_DOCKERFILE,
    ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(BROKEN_DOCKERFILE)],
)
def test_a_broken_dockerfile_is_caught(rule: str, old: str, new: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    assert RULES[rule](load_compose(), Dockerfile.parse(text.replace(old, new))) != []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("pydantic==", "pydantic>="),
        ("\nrocksdict==", "\n# rocksdict=="),
        ("\nmultidict==", "\n# multidict=="),
    ],
    ids=["unpinned", "direct-dependency-missing", "transitive-dependency-missing"],
)
def test_a_broken_lock_is_caught(old: str, new: str) -> None:
    text = LOCK.read_text()
    assert old in text
    assert lock_problems(text.replace(old, new)) != []


def test_prometheus_loads_the_compose_config_as_mounted(tmp_path: Path) -> None:
    """promtool checks the config and rules laid out as the container sees them."""
    service = load_compose()["services"]["prometheus"]
    for source, target in mounts(service):
        if is_bind(source):
            (tmp_path / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, tmp_path / target.lstrip("/"))
    config = tmp_path / (flag(service, "--config.file") or "/etc/prometheus/prometheus.yml").lstrip(
        "/"
    )
    exe = shutil.which("promtool") or "/usr/bin/promtool"
    result = subprocess.run(
        [exe, "check", "config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: [1-9]\d* rules found", result.stdout), result.stdout

"""The ``fhir-admsc`` command line: wires readers, mappings and writers together and prints."""

from __future__ import annotations

import sys
from collections import Counter
from contextlib import contextmanager
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import click
import requests
from requests.auth import HTTPBasicAuth

from fhir_admsc import __version__
from fhir_admsc.auth import SmartBackendAuth
from fhir_admsc.bundle import bundle, bundle_json, ndjson_files, read_resources
from fhir_admsc.client import BearerToken, FhirClient
from fhir_admsc.conformance import load_resources, npm_package
from fhir_admsc.errors import ConfigurationError, ExitCode, FhirAdmscError
from fhir_admsc.mappings import study_from_fhir, study_to_fhir
from fhir_admsc.output import write_atomic, write_files
from fhir_admsc.plots import render_html
from fhir_admsc.pull import pull_study
from fhir_admsc.push import NO_IDENTIFIER_SEARCH, Pusher, ordered
from fhir_admsc.report import analyse, render_json, render_markdown, render_text
from fhir_admsc.tables import read_study, write_study
from fhir_admsc.terminology import VISIT_ORDER
from fhir_admsc.validation import reports
from fhir_admsc.validation.issues import at_least
from fhir_admsc.validation.run import validate_paths

FORMATS = ["transaction", "collection", "ndjson"]


def demo_folder() -> Path:
    """The bundled synthetic demo study folder."""
    return Path(str(package_files.files("fhir_admsc") / "demo"))


class _Failure(click.ClickException):
    """An expected failure, shown as one message on stderr with its registered exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Group(click.Group):
    """The command group; turns fhir-admsc errors into messages and exit codes, never tracebacks."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except FhirAdmscError as e:
            raise _Failure(str(e), e.exit_code) from None
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            raise _Failure(f"{e.strerror or e}{where}", ExitCode.USAGE) from None
        except Exception as e:  # noqa: BLE001 - the last resort: a bug, reported without a traceback
            raise _Failure(
                f"internal error ({type(e).__name__}: {e}); please report it", ExitCode.INTERNAL
            ) from None


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="fhir-admsc")
def cli() -> None:
    """Move the data of an ADMSC cell-therapy study into and out of FHIR R4 systems."""


@cli.command()
@click.argument("study_dir", required=False, type=click.Path(path_type=Path))
@click.option("--demo", is_flag=True, help="Export the bundled synthetic demo study.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Bundle file to write (a directory for ndjson). Default: stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="transaction",
    show_default=True,
    help="A transaction or collection Bundle, or NDJSON files.",
)
def export(study_dir: Path | None, demo: bool, output: Path | None, fmt: str) -> None:
    """Map a study folder to FHIR R4 resources."""
    if demo == (study_dir is not None):
        raise ConfigurationError("give either STUDY_DIR or --demo (one of them)")
    if fmt == "ndjson" and output is None:
        raise ConfigurationError("--format ndjson writes one file per resource type: give -o DIR")
    study = read_study(demo_folder() if demo else study_dir)
    resources = list(study_to_fhir(study))
    if fmt == "ndjson":
        files = ndjson_files(resources)
        write_files(
            output,
            {name: text.encode() for name, text in files.items()},
            stale=[p.name for p in output.glob("*.ndjson")] if output.is_dir() else (),
        )
        where = f"{len(files)} NDJSON files in {output}"
    else:
        text = bundle_json(bundle(resources, fmt, study.info.study_id))
        if output is None:
            sys.stdout.write(text)
            where = "stdout"
        else:
            write_atomic(output, text.encode())
            where = str(output)
    click.echo(f"exported {len(resources)} resources of {study.info.study_id} to {where}", err=True)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(reports.FORMATS),
    default="text",
    show_default=True,
    help="text for people; json (OperationOutcome), sarif or junit.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning"]),
    default="error",
    show_default=True,
    help="The lowest severity that makes the exit code 1.",
)
@click.option(
    "--ig",
    "igs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="More conformance resources: a FHIR package (.tgz) or a folder (repeatable).",
)
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    help="Also validate every resource against this profile URL (repeatable).",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here.")
def validate(
    paths: tuple[Path, ...],
    fmt: str,
    fail_on: str,
    igs: tuple[Path, ...],
    profiles: tuple[str, ...],
    output: Path | None,
) -> None:
    """Validate resources, Bundles or NDJSON against the project's profiles and FHIR R4, offline."""
    issues, checked = validate_paths(paths, igs, profiles)
    report = reports.render(fmt, issues, checked)
    if output is None:
        sys.stdout.write(report)
    else:
        write_atomic(output, report.encode())
    click.echo(reports.summary(issues, checked), err=True)
    if at_least(issues, fail_on):
        sys.exit(ExitCode.INVALID_DATA)


@cli.group()
def profiles() -> None:
    """The project's FHIR conformance package (profiles, extensions, terminology)."""


@profiles.command("package")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="The package.tgz to write.",
)
def profiles_package(output: Path) -> None:
    """Write the profiles as a FHIR NPM package that the HL7 validator, HAPI or SUSHI can load."""
    resources = load_resources()
    write_atomic(output, npm_package(resources))
    click.echo(f"wrote {len(resources)} conformance resources to {output}", err=True)


@profiles.command("list")
def profiles_list() -> None:
    """List the conformance resources: type, canonical URL and title."""
    for resource in load_resources():
        click.echo(
            f"{resource['resourceType']}\t{resource.get('url', '')}\t{resource.get('title', '')}"
        )


def server_options(command=None, *, required: bool = True):
    """The options every command that talks to a server takes (also read from FHIR_ADMSC_*)."""
    if command is None:
        return lambda c: server_options(c, required=required)
    options = [
        click.option(
            "--server",
            "base_url",
            envvar="FHIR_ADMSC_BASE_URL",
            required=required,
            help="Base URL of the FHIR R4 server [env FHIR_ADMSC_BASE_URL].",
        ),
        click.option(
            "--token",
            envvar="FHIR_ADMSC_TOKEN",
            help="Bearer token [env FHIR_ADMSC_TOKEN]; never printed.",
        ),
        click.option("--username", envvar="FHIR_ADMSC_USERNAME", help="Basic auth user."),
        click.option("--password", envvar="FHIR_ADMSC_PASSWORD", help="Basic auth password."),
        click.option(
            "--client-id",
            envvar="FHIR_ADMSC_CLIENT_ID",
            help="SMART Backend Services client id [env FHIR_ADMSC_CLIENT_ID].",
        ),
        click.option(
            "--private-key",
            type=click.Path(path_type=Path),
            envvar="FHIR_ADMSC_PRIVATE_KEY",
            help="PEM private key (RSA or EC P-384) "
            "that signs the client assertion [env FHIR_ADMSC_PRIVATE_KEY].",
        ),
        click.option(
            "--token-url",
            envvar="FHIR_ADMSC_TOKEN_URL",
            help="Token endpoint; "
            "default: from .well-known/smart-configuration [env FHIR_ADMSC_TOKEN_URL].",
        ),
        click.option(
            "--scopes",
            envvar="FHIR_ADMSC_SCOPES",
            default="system/*.read system/*.write",
            show_default=True,
            help="Scopes to request [env FHIR_ADMSC_SCOPES].",
        ),
        click.option(
            "--timeout",
            type=float,
            default=30.0,
            show_default=True,
            help="Seconds to wait for each response.",
        ),
        click.option(
            "--insecure",
            is_flag=True,
            help="Do not verify the server's TLS certificate (only for test servers).",
        ),
        click.option(
            "--allow-http", is_flag=True, help="Allow plain http to a host other than this machine."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_client(
    base_url: str,
    token: str | None,
    username: str | None,
    password: str | None,
    client_id: str | None,
    private_key: Path | None,
    token_url: str | None,
    scopes: str,
    timeout: float,
    insecure: bool,
    allow_http: bool,
) -> FhirClient:
    """A client for the server options; at most one way to authenticate."""
    ways = [bool(token), bool(username or password), bool(client_id or private_key)]
    if sum(ways) > 1:
        raise ConfigurationError(
            "give one way to authenticate: --token, --username/--password, "
            "or --client-id/--private-key"
        )
    if bool(username) != bool(password):
        raise ConfigurationError("basic auth needs both --username and --password")
    if bool(client_id) != bool(private_key):
        raise ConfigurationError("SMART backend services needs both --client-id and --private-key")
    auth: requests.auth.AuthBase | None = None
    if token:
        auth = BearerToken(token)
    elif username:
        auth = HTTPBasicAuth(username, password)
    elif client_id and private_key:
        auth = SmartBackendAuth(
            base_url,
            client_id,
            private_key,
            token_url=token_url,
            scopes=scopes,
            timeout=timeout,
            verify=not insecure,
        )
    return FhirClient(base_url, auth, timeout=timeout, verify=not insecure, allow_http=allow_http)


@cli.command()
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@server_options
@click.option(
    "--mode",
    type=click.Choice(["transaction", "batch"]),
    default="transaction",
    show_default=True,
    help="Send atomic transactions, or batches of independent entries.",
)
@click.option(
    "--chunk",
    type=click.IntRange(1, 10000),
    default=500,
    show_default=True,
    help="Entries per transaction or batch.",
)
@click.option(
    "--match",
    type=click.Choice(["id", "identifier"]),
    default="id",
    show_default=True,
    help="Upsert by id (PUT Type/id) or by business identifier "
    "(conditional update), for servers that assign their own ids.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only report what would be created or updated; exit 3 when anything would change.",
)
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    help="Write one NDJSON line per resource: identifier, outcome, status, server id.",
)
def push(
    source: Path,
    mode: str,
    chunk: int,
    match: str,
    dry_run: bool,
    report: Path | None,
    **server: Any,
) -> None:
    """Upsert a Bundle, an NDJSON folder or a study folder into a FHIR server; re-pushing the
    same data changes nothing."""
    resources = ordered(read_resources(source))
    client = make_client(**server)
    capabilities = client.capabilities()
    if mode == "transaction" and not capabilities.transaction:
        click.echo("the server does not offer transactions: sending batches", err=True)
        mode = "batch"
    if match == "identifier":
        types = {r["resourceType"] for r in resources} - NO_IDENTIFIER_SEARCH
        unable = capabilities.cannot_match_by_identifier(types)
        if unable:
            raise ConfigurationError(
                f"the server cannot update {', '.join(unable)} conditionally on identifier "
                "(its CapabilityStatement says so): use --match id"
            )
    pusher = Pusher(client, match)  # type: ignore[arg-type]
    plan = pusher.plan(resources)
    if dry_run:
        outcomes = plan
        for outcome in plan:
            click.echo(f"{outcome.outcome}\t{outcome.resource}\t{outcome.identifier}")
    else:
        with _progress(len(resources)) as advance:
            outcomes = pusher.send(resources, plan, mode, chunk, advance)  # type: ignore[arg-type]
    if report is not None:
        write_atomic(report, "".join(o.json_line() for o in outcomes).encode())
    counts = Counter(o.outcome for o in outcomes)
    click.echo(
        ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing to push",
        err=True,
    )
    for failure in (o for o in outcomes if o.outcome == "failed"):
        click.echo(
            f"failed: {failure.resource} ({failure.identifier}): {failure.message}", err=True
        )
    if counts["failed"]:
        sys.exit(ExitCode.INVALID_DATA)
    if dry_run and (counts["create"] or counts["update"]):
        sys.exit(ExitCode.CHANGES_PENDING)


@contextmanager
def _progress(total: int):
    """A progress bar on stderr when it is a terminal; otherwise nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label="pushing", file=sys.stderr) as bar:
        yield bar.update


@cli.command()
@server_options
@click.option("--study", "study_id", required=True, help="The study_id of the study to pull.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Study folder (or Bundle file, or NDJSON folder) to write.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["study", *FORMATS]),
    default="study",
    show_default=True,
    help="The study folder of the data contract, or FHIR.",
)
def pull(study_id: str, output: Path, fmt: str, **server: Any) -> None:
    """Pull a study back from a FHIR server."""
    client = make_client(**server)
    client.capabilities()
    resources = pull_study(client, study_id)
    if fmt == "study":
        write_study(study_from_fhir(resources), output)
    elif fmt == "ndjson":
        files = ndjson_files(resources)
        write_files(
            output,
            {name: text.encode() for name, text in files.items()},
            stale=[p.name for p in output.glob("*.ndjson")] if output.is_dir() else (),
        )
    else:
        write_atomic(output, bundle_json(bundle(resources, fmt, study_id)).encode())
    click.echo(f"pulled {len(resources)} resources of {study_id} to {output}", err=True)


@cli.command()
@click.argument("source", required=False, type=click.Path(path_type=Path, exists=True))
@server_options(required=False)
@click.option("--study", "study_id", help="With --server: the study_id to pull and report on.")
@click.option(
    "--baseline",
    default="baseline",
    show_default=True,
    type=click.Choice(VISIT_ORDER),
    help="The visit compared against.",
)
@click.option(
    "--followup",
    default="month12",
    show_default=True,
    type=click.Choice(VISIT_ORDER),
    help="The visit compared.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json", "html"]),
    default="text",
    show_default=True,
    help="How to print the outcome table.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here.")
def report(
    source: Path | None,
    study_id: str | None,
    baseline: str,
    followup: str,
    fmt: str,
    output: Path | None,
    **server: Any,
) -> None:
    """Recompute the study's outcome table from FHIR data: a Bundle, an NDJSON folder, a study
    folder (exported to FHIR first), or a server (--server with --study)."""
    if (source is None) == (server["base_url"] is None):
        raise ConfigurationError("give either SOURCE or --server with --study")
    if source is not None:
        resources = read_resources(source)
    else:
        if not study_id:
            raise ConfigurationError("--server needs --study STUDY_ID")
        client = make_client(**server)
        client.capabilities()
        resources = pull_study(client, study_id)
    # Through the reverse mappings: the report reads what the FHIR resources say, not the CSV.
    study = study_from_fhir(resources)
    table = analyse(study, baseline, followup)
    if fmt == "html":
        text = render_html(table, study)
    else:
        text = {"text": render_text, "markdown": render_markdown, "json": render_json}[fmt](table)
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomic(output, text.encode())
        click.echo(f"wrote the {fmt} report to {output}", err=True)


def main() -> None:
    """Console entry point."""
    cli()

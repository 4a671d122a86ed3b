"""The ``fhir-admsc`` command line: wires readers, mappings and writers together and prints."""

from __future__ import annotations

import os
import sys
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from fhir_admsc.__version__ import __version__
from fhir_admsc.defaults import DEFAULT_SCOPES, DEFAULT_STUDY_ID, RETRY_ATTEMPTS, RETRY_MAX_WAIT
from fhir_admsc.errors import (
    ConfigurationError,
    ExitCode,
    FhirAdmscError,
    InvalidDataError,
    rename_settings,
)
from fhir_admsc.output import write_atomic
from fhir_admsc.terminal import Progress, configure_logging
from fhir_admsc.terminology import VISIT_ORDER
from fhir_admsc.validation import reports
from fhir_admsc.validation.issues import at_least

FORMATS = ["transaction", "collection", "ndjson"]


def demo_folder() -> Path:
    """The bundled synthetic demo study folder."""
    return Path(str(package_files.files("fhir_admsc") / "demo"))


class _Failure(click.ClickException):
    """An expected failure, shown as one message on stderr with its registered exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def option_names(command: click.Command) -> dict[str, str]:
    """Each option's parameter name and its long form, over ``command`` and its subcommands."""
    names = {
        p.name: max(p.opts, key=len)
        for p in command.params
        if isinstance(p, click.Option) and p.name
    }
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names.update(option_names(sub))
    return names


class _PipeClosed(Exception):
    """The reader of stdout went away (``| head``): stop quietly."""


class _Group(click.Group):
    """The command group; turns fhir-admsc errors into messages and exit codes, never tracebacks."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            raise _PipeClosed from None
        except InvalidDataError as e:
            message = _data_problems(e, ctx.meta.get(_ALL_ERRORS))
            raise _Failure(rename_settings(message, self._options(ctx)), e.exit_code) from None
        except FhirAdmscError as e:
            raise _Failure(e.describe(self._options(ctx)), e.exit_code) from None
        except Exception as e:  # noqa: BLE001 - the last resort: a bug, reported without a traceback
            raise _Failure(
                f"internal error ({type(e).__name__}: {e}); please report it", ExitCode.INTERNAL
            ) from None

    def _options(self, ctx: click.Context) -> dict[str, str]:
        """How the command line names each setting: library parameter name -> option (the
        invoked command's own first: --study on pull, --study-id on synth)."""
        names = option_names(self)
        command = self.get_command(ctx, ctx.invoked_subcommand or "")
        return names | option_names(command) if command else names


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fhir-admsc")
def cli() -> None:
    """Move the data of an ADMSC cell-therapy study into and out of FHIR R4 systems."""


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int | bool) -> None:
    ctx.meta[f"fhir_admsc.{param.name}"] = value
    quiet = ctx.meta.get("fhir_admsc.quiet", False)
    configure_logging(-1 if quiet else ctx.meta.get("fhir_admsc.verbose", 0))


def output_options(command):
    """-v/--verbose and -q/--quiet, which every command takes."""
    command = click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_verbosity,
        help="Print no summary; only errors.",
    )(command)
    return click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=_set_verbosity,
        help="Log requests, retries, token fetches and push chunks on stderr (-vv: more).",
    )(command)


_ALL_ERRORS = "fhir_admsc.all_errors"


def _set_all_errors(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    ctx.meta[_ALL_ERRORS] = value


def all_errors_option(command):
    """--all-errors, which the commands that read a study folder take."""
    return click.option(
        "--all-errors",
        is_flag=True,
        expose_value=False,
        callback=_set_all_errors,
        help="List every problem in the study data, not the first rows of each kind.",
    )(command)


def _data_problems(error: InvalidDataError, all_errors: bool | None) -> str:
    """The problems of invalid data: all of them with --all-errors, else a few rows of each
    kind and, when rows were left out, how to see them (None: the command has no such flag)."""
    if all_errors:
        return error.render(None)
    if all_errors is None or not error.hidden():
        return str(error)
    return f"{error}\nrun again with --all-errors to list all {len(error.problems)} problems"


def _warning(message: str) -> None:
    """A warning of the library on stderr."""
    click.echo(f"warning: {message}", err=True)


def _to_stdout(text: str) -> None:
    """Write ``text`` to stdout whole: a pipe whose reader goes away takes part of a large
    write without an error, so write the rest until the pipe says it is closed."""
    sys.stdout.flush()
    rest = memoryview(text.encode())
    while rest:
        written = sys.stdout.buffer.write(rest)
        rest = rest[len(rest) if written is None else written :]
    sys.stdout.buffer.flush()


def _drawn(progress: Progress) -> Progress | None:
    """``progress`` where it is drawn (a terminal), else None: nothing to call."""
    return progress if progress.active else None


def _poll_notice(progress: Progress):
    """How a long wait's news (a bulk export's status) is shown: on the progress line on a
    terminal; otherwise a line on stderr, unless -q, or -v whose log already says it."""
    meta = click.get_current_context().meta
    if progress.active:
        return progress.status
    if meta.get("fhir_admsc.quiet") or meta.get("fhir_admsc.verbose"):
        return None
    return lambda message: click.echo(message, err=True)


def _text_out(text: str, output: Path | None, what: str) -> None:
    """``text`` on stdout, or written atomically to ``output`` and said so."""
    if output is None:
        _to_stdout(text)
    else:
        write_atomic(output, text.encode())
        _summary(f"wrote the {what} to {output}")


def _summary(text: str) -> None:
    """A command's closing summary on stderr, unless --quiet."""
    if not click.get_current_context().meta.get("fhir_admsc.quiet"):
        click.echo(text, err=True)


def jobs_option(what: str) -> Any:
    """-j/--jobs: worker processes, one per core unless given."""
    return click.option(
        "-j",
        "--jobs",
        type=click.IntRange(1, 256),
        default=None,
        help=f"Processes that {what} (default: one per core).",
    )


@cli.command()
@output_options
@all_errors_option
@click.argument("study_dir", required=False, type=click.Path(path_type=Path, exists=True))
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
@jobs_option("map participants (NDJSON)")
def export(
    study_dir: Path | None, demo: bool, output: Path | None, fmt: str, jobs: int | None
) -> None:
    """Map a study folder to FHIR R4 resources."""
    from fhir_admsc.export import export_bundle, export_ndjson
    from fhir_admsc.parallel import cpus

    if demo == (study_dir is not None):
        raise ConfigurationError("give either STUDY_DIR or --demo (one of them)")
    if fmt == "ndjson" and output is None:
        raise ConfigurationError("--format ndjson writes one file per resource type: give -o DIR")
    folder = demo_folder() if demo else study_dir
    with Progress("exporting") as progress:
        if fmt == "ndjson":
            done = export_ndjson(
                folder, output, notify=_warning, progress=_drawn(progress), jobs=jobs or cpus()
            )
            where = f"{done.files} NDJSON files in {output}"
        else:
            progress.status(f"reading {folder}")
            done = export_bundle(folder, fmt, notify=_warning, progress=_drawn(progress))  # type: ignore[arg-type]
    if fmt != "ndjson":
        if output is None:
            _to_stdout(done.text)
            where = "stdout"
        else:
            write_atomic(output, done.text.encode())
            where = str(output)
    _summary(f"exported {done.count} resources of {done.study_id} to {where}")


@cli.command()
@output_options
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
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
    metavar="PACKAGE",
    help="More conformance resources: a FHIR package (.tgz), a folder, or name#version from "
    "the FHIR package cache (~/.fhir/packages); its dependencies come from the other --ig "
    "packages or the cache (repeatable).",
)
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    help="Also validate the resources of this profile's type against it (repeatable); "
    "the profile must be in the project's package or an --ig.",
)
@click.option(
    "--extension-domain",
    "extension_domains",
    multiple=True,
    metavar="URL",
    help="Allow extensions whose URL starts with this, though no package defines them "
    "(repeatable).",
)
@jobs_option("check resources")
@click.option(
    "--no-example-urls",
    is_flag=True,
    help="Refuse URLs of example domains (example.org, acme.com): live data holds none.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here.")
def validate(
    paths: tuple[Path, ...],
    fmt: str,
    fail_on: str,
    igs: tuple[str, ...],
    profiles: tuple[str, ...],
    extension_domains: tuple[str, ...],
    no_example_urls: bool,
    jobs: int | None,
    output: Path | None,
) -> None:
    """Validate resources, Bundles or NDJSON against the project's profiles and FHIR R4, offline."""
    from fhir_admsc.parallel import cpus
    from fhir_admsc.validation.run import validate_paths

    with Progress("validating") as progress:
        issues, checked = validate_paths(
            paths,
            igs,
            profiles,
            progress if progress.active else None,
            extension_domains=extension_domains,
            example_urls=not no_example_urls,
            jobs=jobs or cpus(),
        )
    report = reports.render(fmt, issues, checked)
    if output is None:
        _to_stdout(report)
    else:
        write_atomic(output, report.encode())
    if not (fmt == "text" and output is None and _same_stream(sys.stdout, sys.stderr)):
        _summary(reports.summary(issues, checked))  # the text report ends with it already
    if at_least(issues, fail_on):
        sys.exit(ExitCode.INVALID_DATA)


def _same_stream(one: Any, other: Any) -> bool:
    """Whether two open streams write to the same file or terminal."""
    try:
        return os.path.sameopenfile(one.fileno(), other.fileno())
    except (AttributeError, OSError, ValueError):
        return False


@cli.group()
def profiles() -> None:
    """The project's FHIR conformance package (profiles, extensions, terminology)."""


@profiles.command("package")
@output_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="The package.tgz to write.",
)
def profiles_package(output: Path) -> None:
    """Write the profiles as a FHIR NPM package that the HL7 validator, HAPI or SUSHI can load."""
    from fhir_admsc.conformance import load_resources, npm_package
    from fhir_admsc.views.study import view_files

    resources = load_resources()
    views = view_files()
    write_atomic(output, npm_package(resources, views))
    _summary(
        f"wrote {len(resources)} conformance resources and the study's "
        f"{sum(n.endswith('.json') for n in views)} ViewDefinitions to {output}"
    )


@profiles.command("list")
@output_options
def profiles_list() -> None:
    """List the conformance resources: type, canonical URL and title."""
    from fhir_admsc.conformance import load_resources

    for resource in load_resources():
        click.echo(
            f"{resource['resourceType']}\t{resource.get('url', '')}\t{resource.get('title', '')}"
        )


def retry_options(command):
    """--retries and --retry-wait, which the commands that read or write much on a server take."""
    command = click.option(
        "--retry-wait",
        type=click.FloatRange(0),
        default=RETRY_MAX_WAIT,
        show_default=True,
        help="The longest wait in seconds before a retry, Retry-After included.",
    )(command)
    return click.option(
        "--retries",
        type=click.IntRange(0, 100),
        default=RETRY_ATTEMPTS - 1,
        show_default=True,
        help="Tries after the first of a request that failed for a reason that can pass "
        "(429, 5xx, time-out, dropped connection).",
    )(command)


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
            default=DEFAULT_SCOPES,
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


@cli.command()
@output_options
@all_errors_option
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
    help="Resources read, compared and sent at a time: entries per transaction or batch.",
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
    help="Write one NDJSON line per resource as the server confirms it: identifier, outcome, "
    "status, server id, SHA-256 of the content.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an earlier run of the same push from its --report: skip what it says is done "
    "with the same content, send the rest.",
)
@retry_options
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Chunks compared and sent at a time; a chunk waits for those holding what it refers to.",
)
def push(
    source: Path,
    mode: str,
    chunk: int,
    match: str,
    dry_run: bool,
    report: Path | None,
    resume: bool,
    retries: int,
    retry_wait: float,
    concurrency: int,
    **server: Any,
) -> None:
    """Upsert a Bundle, an NDJSON folder or a study folder into a FHIR server; re-pushing the
    same data changes nothing."""
    from fhir_admsc.auth import connect
    from fhir_admsc.client import RetryPolicy
    from fhir_admsc.inputs import Source
    from fhir_admsc.journal import Journal, PushResult
    from fhir_admsc.push import push_all

    if resume and report is None:
        raise ConfigurationError("--resume needs --report: the report of the run to continue")
    if resume and dry_run:
        raise ConfigurationError("a dry run sends nothing, so there is nothing to resume")
    resources = Source(source, notify=_warning)
    client = connect(**server)
    client.retry = RetryPolicy(attempts=retries + 1, max_wait=retry_wait)
    journal = Journal(report, resume=resume) if report is not None else None

    def shown(result: PushResult) -> None:
        if dry_run:
            click.echo(f"{result.outcome}\t{result.resource}\t{result.identifier}")
        if result.outcome == "failed":
            click.echo(
                f"failed: {result.resource} ({result.identifier}): {result.message}", err=True
            )

    with Progress("pushing", resources.total) as progress:
        counts = push_all(
            resources,
            client,
            mode=mode,  # type: ignore[arg-type]
            match=match,  # type: ignore[arg-type]
            chunk=chunk,
            dry_run=dry_run,
            journal=journal,
            progress=progress,
            results=shown,
            concurrency=concurrency,
        )
    _summary(
        ", ".join(f"{n} {what}" for what, n in sorted(counts.items()) if n) or "nothing to push"
    )
    if counts["failed"]:
        sys.exit(ExitCode.INVALID_DATA)
    if dry_run and (counts["create"] or counts["update"]):
        sys.exit(ExitCode.CHANGES_PENDING)


@cli.command()
@output_options
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
@click.option(
    "--bulk",
    is_flag=True,
    help="Through a Bulk Data $export of the server (kept to this study) instead of searches.",
)
@click.option("--group", help="With --bulk: export only this Group's members (Group/ID/$export).")
@click.option(
    "--poll-interval-max",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="With --bulk: the longest wait in seconds between two status polls (Retry-After capped).",
)
@click.option(
    "--bulk-timeout",
    type=click.FloatRange(0),
    default=3600.0,
    show_default=True,
    help="With --bulk: seconds to wait for the export to be done.",
)
def pull(
    study_id: str,
    output: Path,
    fmt: str,
    bulk: bool,
    group: str | None,
    poll_interval_max: float,
    bulk_timeout: float,
    **server: Any,
) -> None:
    """Pull a study back from a FHIR server."""
    from fhir_admsc.auth import connect
    from fhir_admsc.bulk import bulk_pull_study
    from fhir_admsc.export import write_resources
    from fhir_admsc.pull import pull_study

    if group and not bulk:
        raise ConfigurationError("--group needs --bulk")
    client = connect(**server)
    capabilities = client.capabilities()
    progress = Progress("pulling")
    if not bulk:
        with progress:
            resources = pull_study(client, study_id, progress=_drawn(progress))
    elif not (capabilities.group_export if group else capabilities.bulk_export):
        raise ConfigurationError(
            f"the server's CapabilityStatement declares no {'Group' if group else 'system'}-level "
            "$export operation: pull without --bulk"
        )
    else:
        with progress:
            resources = bulk_pull_study(
                client,
                study_id,
                group=group,
                poll_interval_max=poll_interval_max,
                timeout=bulk_timeout,
                notify=_poll_notice(progress),
                progress=_drawn(progress),
            )
    write_resources(resources, output, fmt, study_id)  # type: ignore[arg-type]
    _summary(f"pulled {len(resources)} resources of {study_id} to {output}")


@cli.command()
@output_options
@all_errors_option
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
@click.option(
    "--engine",
    type=click.Choice(["auto", "duckdb", "spark", "python"]),
    default="auto",
    show_default=True,
    help="Read the study tables through the study's SQL-on-FHIR views on DuckDB (auto: when "
    "installed) or Spark, or through the reverse mappings in Python.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here.")
def report(
    source: Path | None,
    study_id: str | None,
    baseline: str,
    followup: str,
    fmt: str,
    engine: str,
    output: Path | None,
    **server: Any,
) -> None:
    """Recompute the study's outcome table from FHIR data: a Bundle, an NDJSON folder, a study
    folder (exported to FHIR first), or a server (--server with --study)."""
    from fhir_admsc.auth import connect
    from fhir_admsc.inputs import is_study_folder, read_fhir
    from fhir_admsc.mappings import study_from_fhir
    from fhir_admsc.plots import render_html
    from fhir_admsc.pull import pull_study
    from fhir_admsc.report import analyse, render_json, render_markdown, render_text
    from fhir_admsc.views import duck
    from fhir_admsc.views.engines import read_study

    from_environment = (
        click.get_current_context().get_parameter_source("base_url") == ParameterSource.ENVIRONMENT
    )
    if source is not None and server["base_url"] is not None and not from_environment:
        raise ConfigurationError("give either SOURCE or --server with --study, not both")
    if source is None and server["base_url"] is None:
        raise ConfigurationError("give SOURCE, or --server with --study")
    if source is None and not study_id:
        raise ConfigurationError("--server needs --study STUDY_ID")
    if engine == "auto":
        engine = "duckdb" if duck.available() else "python"
    progress = Progress("report")
    resources = None
    if source is None:
        client = connect(**server)
        client.capabilities()
        with Progress("pulling") as pulling:
            resources = pull_study(client, study_id, progress=_drawn(pulling))  # type: ignore[arg-type]
    elif engine == "python" or is_study_folder(source):
        progress.status(f"reading {source}")  # an explicit SOURCE wins over FHIR_ADMSC_BASE_URL
        resources = read_fhir(source, notify=_warning)
    # The report reads what the FHIR resources say, not the CSV: through the reverse mappings,
    # or through the study's views (the same mapping written as SQL on FHIR).
    with progress:
        if engine == "python":
            progress.status(f"mapping {len(resources):,} resources back to the study tables")  # type: ignore[arg-type]
            study = study_from_fhir(resources)  # type: ignore[arg-type]
        else:
            progress.status(f"reading the study tables through the views ({engine})")
            study = read_study(engine, source if resources is None else resources)
        progress.status(f"analysing {len(study.participants):,} participants")
        table = analyse(study, baseline, followup)
        if fmt == "html":
            progress.status("drawing the figures")
            text = render_html(table, study)
        else:
            render = {"text": render_text, "markdown": render_markdown, "json": render_json}[fmt]
            text = render(table)
    _text_out(text, output, f"{fmt} report")


@cli.command()
@output_options
@click.argument("view_file", metavar="VIEW.json", type=click.Path(path_type=Path, exists=True))
@click.argument("sources", metavar="SOURCE...", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet", "ndjson"]),
    default="csv",
    show_default=True,
    help="How the rows are written.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Write the rows here (csv: default standard output).",
)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default="duckdb",
    show_default=True,
    help="DuckDB, embedded; or Spark (the session a cluster job has, else a local one): "
    "-o is then a folder of part files.",
)
@click.option("--sql", is_flag=True, help="Print the view's SQL instead of running it.")
def view(
    view_file: Path,
    sources: tuple[Path, ...],
    fmt: str,
    output: Path | None,
    engine: str,
    sql: bool,
) -> None:
    """Run a SQL-on-FHIR v2 ViewDefinition over FHIR data (NDJSON files or folders, Bundles)
    with DuckDB or Spark; each row of the view a row of the output."""
    from fhir_admsc.views import duck, located, read_view
    from fhir_admsc.views import spark as on_spark
    from fhir_admsc.views.compiler import compile_view
    from fhir_admsc.views.definition import ViewError

    if not sql and not sources:
        raise ConfigurationError("give the FHIR data to read: NDJSON files or folders, Bundles")
    if output is None and (fmt != "csv" or engine == "spark") and not sql:
        raise ConfigurationError(f"--format {fmt} on {engine} needs -o")
    definition = read_view(view_file)
    try:
        compiled = compile_view(definition, duck.SOURCE, engine)
        if sql:
            _to_stdout(compiled.sql + ";\n")
            return
        if engine == "spark":
            spark = on_spark.session()
            on_spark.load_files(spark, sources)
            count = on_spark.write(spark, compiled, output, fmt)  # type: ignore[arg-type]
        else:
            connection = duck.connect()
            relations = duck.load_files(connection, sources)
            source = duck.source_of(definition["resource"], relations)
            compiled = compile_view(definition, source)
            count = duck.write(connection, compiled, output, fmt)
    except ViewError as e:
        raise located(view_file, e) from None
    if output is not None:
        _summary(f"wrote {count:,} rows of {len(compiled.columns)} columns to {output}")


@cli.command()
@output_options
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="The folder to write."
)
def views(output: Path) -> None:
    """Write the study's SQL-on-FHIR ViewDefinitions (one JSON file each) and the SQL that joins
    their rows into the study tables (one .sql file a table)."""
    from fhir_admsc.output import write_files
    from fhir_admsc.views.study import view_files

    files = view_files()
    write_files(output, {name: text.encode() for name, text in files.items()})
    count = sum(name.endswith(".json") for name in files)
    _summary(f"wrote {count} ViewDefinitions and {len(files) - count} table queries to {output}")


def study_folder_output(command):
    """-o DIR and --force, which the commands that write a new study folder take."""
    command = click.option(
        "--force", is_flag=True, help="Replace the study files of a non-empty folder."
    )(command)
    return click.option(
        "-o",
        "--output",
        type=click.Path(path_type=Path, file_okay=False),
        required=True,
        help="The study folder to write (new or empty).",
    )(command)


@cli.command()
@output_options
@click.option(
    "--participants",
    type=click.IntRange(min=1),
    required=True,
    help="How many invented participants (1 or more).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="The random seed: the same seed and size give the same folder, byte for byte.",
)
@click.option("--study-id", help="The study_id of study.json. Default: ADMSC-SYN-<seed>.")
@study_folder_output
def synth(participants: int, seed: int, study_id: str | None, output: Path, force: bool) -> None:
    """Write a synthetic study folder of invented participants, of any size, for tests and demos."""
    from fhir_admsc.synth import write_synthetic_study

    with Progress("synth", participants, unit="participants") as progress:
        info = write_synthetic_study(
            output, participants, seed, study_id, force, progress if progress.active else None
        )
    _summary(f"wrote {participants} synthetic participants of {info.study_id} to {output}")


@cli.command()
@output_options
@study_folder_output
@click.option(
    "--study-id",
    default=DEFAULT_STUDY_ID,
    show_default=True,
    help="The study_id of study.json: the namespace of every identifier of the study.",
)
def template(output: Path, study_id: str, force: bool) -> None:
    """Write an empty study folder to fill in: study.json with placeholders to replace and every
    table with its header row."""
    from fhir_admsc.contract import PAGE, write_template

    files = write_template(output, study_id, force)
    _summary(
        f"wrote an empty study folder to {output} (study.json and {len(files) - 1} tables); "
        f"what goes in each file and column: {PAGE} in the fhir-admsc sources"
    )


@cli.command("ehr-pull")
@output_options
@click.argument("study_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@server_options
@click.option(
    "--link",
    "link_file",
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="CSV of participant_id,patient_identifier (the hospital's system|value).",
)
@click.option(
    "--visit-window",
    "window_days",
    type=click.IntRange(0, 365),
    default=3,
    show_default=True,
    help="Days either side of a visit date within which a record belongs to that visit.",
)
@click.option(
    "--group",
    help="The hospital's Group of the linked patients: their records out of one Bulk Data "
    "Group/ID/$export, not read patient by patient.",
)
@retry_options
@study_folder_output
def ehr_pull(
    study_dir: Path,
    link_file: Path,
    window_days: int,
    group: str | None,
    retries: int,
    retry_wait: float,
    output: Path,
    force: bool,
    **server: Any,
) -> None:
    """Pull linked participants' routine records from the hospital's FHIR server into a draft
    study folder, with each value's provenance and a review list of what was not taken."""
    from fhir_admsc.client import RetryPolicy
    from fhir_admsc.esource.pull import pull_draft

    progress = Progress("ehr-pull")
    with progress:
        draft = pull_draft(
            study_dir,
            link_file,
            output,
            window_days,
            retry=RetryPolicy(attempts=retries + 1, max_wait=retry_wait),
            group=group,
            force=force,
            told=progress.status,
            **server,
        )
    cells = len(draft.provenance)
    _summary(
        f"wrote the draft to {output}: {cells} values from the hospital's records "
        f"(provenance.csv), {len(draft.review)} items to review (review.csv)"
    )


@cli.command("diff")
@output_options
@click.argument("study_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("draft_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Counts and differences as text, or every compared cell as JSON.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write here, not stdout.")
def diff(study_dir: Path, draft_dir: Path, fmt: str, output: Path | None) -> None:
    """Compare a study folder with a draft from ehr-pull, cell by cell: same, differs, only in
    one. Exits 3 when the EHR says something the study does not (a different or an extra value)."""
    from fhir_admsc.esource.diff import compare, differences, render_json, render_text

    cells = compare(study_dir, draft_dir)
    text = (render_json if fmt == "json" else render_text)(cells)
    _text_out(text, output, f"{fmt} comparison")
    if differences(cells):
        sys.exit(ExitCode.CHANGES_PENDING)


def main() -> None:
    """Console entry point."""
    try:
        try:
            cli(prog_name="fhir-admsc")
        finally:
            sys.stdout.flush()  # here, so that a reader gone away is seen and not reported
    except (BrokenPipeError, _PipeClosed):
        # the reader of stdout (| head) has what it wanted: no traceback, no message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(ExitCode.OK)

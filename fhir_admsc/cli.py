"""The ``fhir-admsc`` command line: wires readers, mappings and writers together and prints."""

from __future__ import annotations

import sys
from importlib import resources as package_files
from pathlib import Path

import click

from fhir_admsc import __version__
from fhir_admsc.bundle import bundle, bundle_json, ndjson_files
from fhir_admsc.conformance import load_resources, npm_package
from fhir_admsc.errors import ConfigurationError, ExitCode, FhirAdmscError
from fhir_admsc.mappings import study_to_fhir
from fhir_admsc.output import write_atomic, write_files
from fhir_admsc.tables import read_study
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


def main() -> None:
    """Console entry point."""
    cli()

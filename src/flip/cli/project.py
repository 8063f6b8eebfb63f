"""`flip project …`: a researcher's projects at the hub they logged in to."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from flip.cli.hub_session import connected, fail, hub_console, print_json
from flip.problems import as_text

app = typer.Typer(
    help="Projects at the hub you logged in to (`flip login`): create, list, show, invite sites, "
    "add and remove members.",
    no_args_is_help=True,
)
member = typer.Typer(
    help="A project's members: researchers and viewers besides its owner.", no_args_is_help=True
)
app.add_typer(member, name="member")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ProjectArg = Annotated[int, typer.Argument(help="The project's id (`flip project list`).")]


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="The project's name.")],
    description: Annotated[str, typer.Option(help="What the project is for.")] = "",
    again: Annotated[
        bool,
        typer.Option("--again", help="Create it even if a project you see has this name."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a project you own; print its id. A name already used by a project you
    see is refused unless --again, so a repeated command makes no twin.

    Example: flip project create "Diabetes outcomes" --description "HbA1c and MACE"
    """
    with connected() as hub:
        same = [p for p in hub.projects(search=name) if p["name"] == name]
        if same and not again:
            fail(
                f"project {same[0]['id']} (owner {same[0]['owner']}) is already named {name!r}: "
                f"use it (flip project show {same[0]['id']}) or pass --again to make another"
            )
        project = hub.project(hub.create_project(name, description))
    if as_json:
        print_json(project)
        return
    typer.echo(f"created project {project['id']}: {project['name']}")
    typer.echo(f"next: flip project invite {project['id']} SITE [SITE ...]")


@app.command("list")
def list_projects(
    search: Annotated[
        str, typer.Option(help="Keep projects whose name or description holds this.")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """The projects you own or are a member of (an admin: all), newest first.

    Example: flip project list --search diabetes
    """
    with connected() as hub:
        found = hub.projects(search)
    if as_json:
        print_json(found)
        return
    if not found:
        typer.echo("no projects yet: create one with `flip project create NAME`")
        return
    table = Table(title="Projects")
    found = as_text(found)
    for column in ("id", "name", "owner", "sites", "created"):
        table.add_column(column)
    for p in found:
        table.add_row(
            str(p["id"]), p["name"], p["owner"], str(p["sites"]), str(p["created_at"])[:19]
        )
    hub_console().print(table)


@app.command()
def show(project_id: ProjectArg, as_json: JsonOption = False) -> None:
    """A project: members, invited sites and their state, tasks with each site's decision,
    queries and runs.

    Example: flip project show 3
    """
    with connected() as hub:
        shown = hub.project(project_id)
        shown |= {
            "tasks": hub.tasks(project_id),
            "queries": hub.queries(project_id),
            "runs": hub.runs(project_id),
        }
    if as_json:
        print_json(shown)
        return
    description = [as_text(line) for line in shown["description"].splitlines()]
    shown = as_text(shown)
    console = hub_console()
    console.print(
        Text.assemble((shown["name"], "bold"), f" (project {shown['id']}, owner {shown['owner']})")
    )
    if description:
        console.print("\n".join(description))
    console.print(f"members: {', '.join(shown['members']) or 'none'}")
    sites = Table(title="Sites")
    sites.add_column("site")
    sites.add_column("state")
    for name, state in sorted(shown["sites"].items()):
        sites.add_row(name, state)
    console.print(sites if shown["sites"] else "no sites invited: flip project invite ID SITE")
    tasks = Table(title="Tasks")
    for column in ("hash", "kind", "decisions"):
        tasks.add_column(column)
    for task in shown["tasks"]:
        decided = ", ".join(f"{n}: {d[0]}" for n, d in sorted(task["decisions"].items()))
        tasks.add_row(task["hash"][:16], task["kind"], decided or "no sites invited")
    console.print(
        tasks if shown["tasks"] else "no tasks proposed: flip task propose SPEC --project ID"
    )
    listed = Table(title="Queries and runs")
    for column in ("what", "id", "name / task", "state"):
        listed.add_column(column)
    for q in shown["queries"]:
        listed.add_row("query", str(q["id"]), q["name"], f"{q['n'] or 0} site(s) answered")
    for r in shown["runs"]:
        listed.add_row("run", str(r["id"]), r["hash"][:16], f"{r['status']} ({r['rounds']} rounds)")
    if shown["queries"] or shown["runs"]:
        console.print(listed)


@app.command()
def invite(
    project_id: ProjectArg,
    sites: Annotated[list[str], typer.Argument(help="Enrolled sites' names.")],
    as_json: JsonOption = False,
) -> None:
    """Invite sites to a project; each site's admin decides whether it takes part.

    Example: flip project invite 3 alpha beta
    """
    with connected() as hub:
        states = hub.invite(project_id, sites)
    if as_json:
        print_json(states)
        return
    for name, state in sorted(states.items()):
        typer.echo(f"{name}: {state}")


UsersArg = Annotated[list[str], typer.Argument(help="Users' names.")]


@member.command("add")
def add_member(project_id: ProjectArg, users: UsersArg, as_json: JsonOption = False) -> None:
    """Add researchers or viewers to a project you own; print its members.

    Example: flip project member add 3 rosa omar
    """
    with connected() as hub:
        members = hub.add_members(project_id, users)
    if as_json:
        print_json(members)
        return
    typer.echo(f"members: {', '.join(members) or 'none'}")


@member.command("remove")
def remove_member(project_id: ProjectArg, users: UsersArg, as_json: JsonOption = False) -> None:
    """Take members off a project you own (what they did in it stays in the audit log).

    Example: flip project member remove 3 omar
    """
    with connected() as hub:
        ids = hub.project(project_id).get("member_ids", {})
        if missing := sorted(set(users) - set(ids)):
            fail(f"not members of project {project_id}: {', '.join(missing)}")
        for name in dict.fromkeys(users):
            hub.remove_member(project_id, ids[name])
        members = sorted(set(ids) - set(users))
    if as_json:
        print_json(members)
        return
    typer.echo(f"members: {', '.join(members) or 'none'}")

"""The README's flag tables against the installed command's --help: every flag --help prints is
in the README, the README names no flag the command lacks, and the defaults the two give agree.
Users read the README first; a flag it lacks or invents is a surprise."""

import re

from conftest import REPO, run_evserve


def help_flags(*args):
    """{long flag: default or None} from `evserve [args] --help`."""
    done = run_evserve(*args, "--help")
    assert done.returncode == 0, done.stderr
    flags = {}
    for line in done.stdout.splitlines():
        match = re.match(r"\s+(?:-\w, )?(--[\w-]+)", line)
        if match:
            default = re.search(r"\[default: ([^\]]*)\]", line)
            flags[match.group(1)] = default.group(1) if default else None
    return flags


def readme_section(start, end):
    text = (REPO / "README.md").read_text()
    return text[text.index(start):text.index(end, text.index(start))]


def readme_rows(section):
    """{long flag: default column} of the `| flag | default | meaning |` rows in `section`."""
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| `-") or len(cells) < 2:
            continue
        for flag in re.findall(r"(--[\w-]+)", cells[0]):
            rows[flag] = cells[1].strip("`") if len(cells) == 3 else None
    return rows


def test_the_readme_flag_tables_list_exactly_the_flags_of_help():
    documented = readme_rows(readme_section("## Command line", "Subcommands ("))
    printed = help_flags()
    assert sorted(set(printed) - set(documented)) == []
    assert sorted(set(documented) - set(printed)) == []
    for flag, default in printed.items():
        if default and default != '""':
            assert documented[flag] == default, f"{flag}: README {documented[flag]!r}, --help {default!r}"


def test_the_readme_names_every_nginx_config_flag():
    section = readme_section("Subcommands (", "### Logs")
    missing = [flag for flag in help_flags("nginx-config") if flag not in section and flag != "--help"]
    assert missing == []


def test_listen_help_gives_its_default_with_socket_dir_too():
    done = run_evserve("--help")
    listen = next(line for line in done.stdout.splitlines() if "--listen" in line)
    assert "--socket-dir" in listen, listen

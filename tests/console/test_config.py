"""Configuration errors name the file, the line and the key; secrets come from files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from console.config import ConfigError, load_config
from protocol.configfile import key_lines, load_toml_model


def write(tmp_path: Path, text: str, name: str = "console.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_every_error_is_reported_with_file_line_and_key(tmp_path: Path):
    path = write(
        tmp_path,
        """
        name = "Main Console"
        site = "+"

        [mqtt]
        host = "127.0.0.1"
        port = 70000
        passwrd_file = "secret"

        [store]
        path = "events.db"

        [ingest]
        batch_max = 0
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{path}:1: name: ")
    assert lines[1] == f"{path}:6: mqtt.port: Input should be less than or equal to 65535"
    assert lines[2] == f"{path}:7: mqtt.passwrd_file: unknown key (not allowed here)"
    assert lines[3] == f"{path}:13: ingest.batch_max: Input should be greater than or equal to 1"
    assert len(lines) == 4
    assert [issue.line for issue in caught.value.issues] == [1, 6, 7, 13]
    assert isinstance(caught.value, ValueError)


def test_section_level_errors_point_at_the_section(tmp_path: Path):
    path = write(
        tmp_path,
        """
        [mqtt]
        password_file = "a"
        credential = "b"
        """,
    )
    with pytest.raises(ConfigError, match=rf"^{path}:1: mqtt: give password_file or credential, not both$"):
        load_config(path)


def test_toml_syntax_errors_name_the_line(tmp_path: Path):
    path = write(tmp_path, 'name = "console"\n\n[mqtt]\nport = \n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.issues[0].line == 4
    assert str(caught.value).startswith(f"{path}:4: TOML syntax: ")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_a_valid_file_resolves_paths_and_reads_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "console.secret").write_text("s3cret\n")
    path = write(
        tmp_path,
        """
        name = "main"
        site = "longtan"

        [mqtt]
        port = 18830
        username = "console.main"
        password_file = "secrets/console.secret"

        [store]
        path = "data/events.db"
        """,
    )
    config = load_config(path)
    assert config.store.path == tmp_path.resolve() / "data" / "events.db"
    endpoint = config.mqtt.endpoint()
    assert (endpoint.port, endpoint.username, endpoint.password) == (18830, "console.main", "s3cret")
    assert "s3cret" not in repr(endpoint)

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt").write_text("from-systemd")
    path = write(tmp_path, '[mqtt]\nusername = "console.console"\ncredential = "mqtt"\n', "systemd.toml")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(path)
    assert (config.name, config.site) == ("console", "+")
    assert config.mqtt.endpoint().password == "from-systemd"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(FileNotFoundError):
        config.mqtt.endpoint()


def test_key_lines_follow_tables_arrays_of_tables_and_skip_multiline_values():
    text = textwrap.dedent(
        '''
        site = "s"   # a comment with key = value
        notes = """
        fake = 1
        [fake]
        """
        allow = [
            "a = b",
            "c",
        ]

        [mqtt]
        host = "h"
        "quoted key" = 1
        tls.ca = "x"

        [[scanners]]
        name = "one"

        [[scanners]]
        name = "two"
        url = "/dev/ttyUSB0"
        inline = { a = 1, b = 2 }
        '''
    ).lstrip("\n")
    lines = key_lines(text)
    assert lines[("site",)] == 1
    assert lines[("notes",)] == 2
    assert ("fake",) not in lines
    assert lines[("allow",)] == 6
    assert ("c",) not in lines
    assert lines[("mqtt",)] == 11
    assert lines[("mqtt", "host")] == 12
    assert lines[("mqtt", "quoted key")] == 13
    assert lines[("mqtt", "tls", "ca")] == 14
    assert lines[("scanners",)] == 16
    assert lines[("scanners", 0)] == 16
    assert lines[("scanners", 0, "name")] == 17
    assert lines[("scanners", 1)] == 19
    assert lines[("scanners", 1, "url")] == 21
    assert lines[("scanners", 1, "inline")] == 22


class _Reader(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    url: str


class _Gate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str
    readers: list[_Reader] = []


def test_missing_keys_point_at_their_table_or_the_top_of_the_file(tmp_path: Path):
    path = write(
        tmp_path,
        """
        [[readers]]
        name = "a"
        url = "x"

        [[readers]]
        name = "b"
        baud = 9600
        """,
        "gate.toml",
    )
    with pytest.raises(ConfigError) as caught:
        load_toml_model(path, _Gate)
    assert [str(issue) for issue in caught.value.issues] == [
        f"{path}:1: site: required key is missing",
        f"{path}:5: readers.1.url: required key is missing",
        f"{path}:7: readers.1.baud: unknown key (not allowed here)",
    ]

"""The command line generated from the configs (selfteach.cliconfig): every option matches
its config field, `--config` replays a run's config.yaml, flags override it, and a bad
file is one line naming the file, line and key. Plus the static command table."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from typer._click import Context

from selfteach import cli
from selfteach.cliconfig import CommandSpec, short_help

# Config fields that have no option of their own, and why (a --config file still sets them).
# (improve's nested dpo / grpo settings have options for some sub-fields: --beta, --grpo-lr, ...)
NO_OPTION = {
    ("selfteach elicit", "template"): "nested prompt template; --label-words sets its label words",
    **{
        (f"selfteach judge {c}", "k"): "the sample count is max(--k)"
        for c in ("run", "eval", "rft-data")
    },
    **{
        (
            "selfteach judge rft-data",
            f,
        ): "rft-data judges all responses together once, without a meta RM"
        for f in ("mode", "orders", "meta_rm", "k_meta", "force_scores", "serve")
    },
}


def _commands(group=None, path="selfteach"):
    """(command path, click command, its CommandSpec) for every generated command."""
    group = group or cli._command()
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, f"{path} {name}")
            continue
        cmd.get_params(Context(cmd))  # builds a deferred command (train sft, judge train-meta)
        f = cmd.callback
        while f is not None and not hasattr(f, "spec"):
            f = getattr(f, "__wrapped__", None)
        yield f"{path} {name}", cmd, (f.spec if f is not None else None)


def test_every_command_but_two_is_generated_from_its_config():
    plain = {path for path, _, spec in _commands() if spec is None}
    assert plain == {"selfteach models", "selfteach report"}  # no settings to generate from
    assert len([1 for _, _, spec in _commands() if spec is not None]) == 12


@pytest.mark.parametrize("path", [p for p, _, s in _commands() if s is not None])
def test_options_match_config_fields(path):
    """Each option's default, help and choices are its config field's; every field has an
    option unless listed in NO_OPTION with its reason."""
    cmd, spec = next((c, s) for p, c, s in _commands() if p == path)
    spec: CommandSpec
    params = {p.name: p for p in cmd.params}
    with_option = {f.key.split(".")[0] for f in spec.fields}
    missing = {k for k in spec.model.model_fields if k not in with_option}
    assert missing == {f for (p, f) in NO_OPTION if p == path}, missing
    for f in spec.fields:
        top, _, sub = f.key.partition(".")
        info = spec.model.model_fields[top]
        default = info.get_default(call_default_factory=True)
        if sub:
            info, default = type(default).model_fields[sub], getattr(default, sub)
        assert info.description, f"{path}: field {f.key} has no description"
        p = params[f.name]
        assert f.flag in p.opts
        assert p.help.removesuffix(" [required]") == short_help(info.description)
        if (
            f.default is not ... and f.default != default
        ):  # a command's own default: its fields only
            assert f.key in ("ks", "data"), (f.key, f.default, default)
        elif p.default is not None:
            assert p.default == default, (f.key, p.default, default)
        ann = info.annotation
        if typing.get_origin(ann) is typing.Literal:  # a choice, listed in --help
            assert (
                p.display_type_rich(ctx=Context(cmd)) == "<" + "|".join(typing.get_args(ann)) + ">"
            )
        if ann is bool:
            assert p.secondary_opts == ["--no-" + f.flag.removeprefix("--")]


def test_help_is_grouped_for_every_command():
    for path, _, spec in _commands():
        if spec is None:
            continue
        r = subprocess.run(
            [sys.executable, "-m", "selfteach", *path.split()[1:], "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "COLUMNS": "120",
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(Path(cli.__file__).parents[1]),
            },
        )
        assert r.returncode == 0, r.stderr
        assert "─ Run ─" in r.stdout and "--config" in r.stdout, path
        break  # one subprocess is enough for the layout; the rest in-process below
    from typer.testing import CliRunner

    for path, _, spec in _commands():
        r = CliRunner().invoke(cli.app, [*path.split()[1:], "--help"], env={"COLUMNS": "120"})
        assert r.exit_code == 0, (path, r.output)
        if spec is not None:
            assert "─ Run ─" in r.output and "--config" in r.output, path


# ---- the static command table ------------------------------------------------------------
def test_command_table_is_static_and_sub_apps_do_not_import_cli():
    src = Path(cli.__file__).read_text()
    assert "importlib" not in src and "except Exception" not in src
    code = (
        "import sys; import selfteach.evaluate.commands, selfteach.train.commands, "
        "selfteach.judge.commands, selfteach.elicit.commands, selfteach.improve.commands, "
        "selfteach.report.commands, selfteach.demo; "
        "assert 'selfteach.cli' not in sys.modules, 'a sub-app imports cli.py'; "
        "import selfteach.cli as c; c._command(); "
        "heavy = [m for m in ('torch', 'trl', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_python_m_selfteach_cli_has_the_sub_commands():
    """Run as `python -m selfteach.cli`, cli.py is __main__; sub-apps that registered on an
    imported second copy of it left `train`, `judge` and `eval` empty."""
    r = subprocess.run(
        [sys.executable, "-m", "selfteach.cli", "train", "dpo", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "--pairs" in r.stdout, r.stderr


# ---- --config replay ---------------------------------------------------------------------
def _run(argv, capsys):
    rc = cli.run([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


ACC = [
    "eval",
    "accuracy",
    "--model",
    "tiny-random",
    "--limit",
    "3",
    "--samples",
    "2",
    "--max-new-tokens",
    "4",
]


def test_config_replay_reproduces_the_run_and_flags_override(tmp_path, capsys):
    first, replay, override = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert _run([*ACC, "--seed", "5", "--out", first], capsys)[0] == 0
    # the config.yaml as is, by file and by run directory
    assert (
        _run(["eval", "accuracy", "--config", first / "config.yaml", "--out", replay], capsys)[0]
        == 0
    )
    assert (replay / "config.yaml").read_text() == (first / "config.yaml").read_text()
    assert (replay / "outputs.jsonl").read_text() == (first / "outputs.jsonl").read_text()
    assert (
        _run(["eval", "accuracy", "--config", first, "--samples", "1", "--out", override], capsys)[
            0
        ]
        == 0
    )
    cfg = yaml.safe_load((override / "config.yaml").read_text())
    assert (cfg["samples"], cfg["limit"], cfg["seed"], cfg["max_new_tokens"]) == (1, 3, 5, 4)
    rows = [json.loads(x) for x in (override / "outputs.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["outputs"]) == 1 for r in rows)


def test_elicit_replay_with_its_command_settings_and_template(tmp_path, capsys):
    """elicit's config.yaml holds command settings (model, claims, task, ...) next to
    ICMConfig, whose nested template only a file sets."""
    args = [
        "elicit",
        "--model",
        "tiny-random",
        "--claims",
        "builtin:capitals",
        "--task",
        "exclusive",
        "--limit",
        "6",
        "--iters",
        "3",
        "--no-progress",
        "--label-words",
        "yes,no",
    ]
    assert _run([*args, "--out", tmp_path / "a"], capsys)[0] == 0
    assert (
        _run(
            ["elicit", "--config", tmp_path / "a", "--no-progress", "--out", tmp_path / "b"], capsys
        )[0]
        == 0
    )
    assert (tmp_path / "b" / "config.yaml").read_text() == (
        tmp_path / "a" / "config.yaml"
    ).read_text()
    labels = [(tmp_path / d / "labels.jsonl").read_text() for d in "ab"]
    assert labels[0] == labels[1]


def test_anytime_fields_once_missing_from_the_cli_are_settable(tmp_path, capsys):
    out = tmp_path / "r"
    rc, _, err = _run(
        [
            "eval",
            "anytime",
            "--model",
            "tiny-random",
            "--limit",
            "1",
            "--budgets",
            "4,8",
            "--answer-tokens",
            "2",
            "--system",
            "Be brief.\\nThanks.",
            "--answer-stop",
            "\\n\\n",
            "--answer-stop",
            "###",
            "--top-p",
            "0.9",
            "--pdp-temperature",
            "0.5",
            "--out",
            out,
        ],
        capsys,
    )
    assert rc == 0, err
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["system"] == "Be brief.\nThanks." and cfg["answer_stop"] == ["\n\n", "###"]
    assert (cfg["top_p"], cfg["pdp_temperature"], cfg["budgets"]) == (0.9, 0.5, [4, 8])


# every other command: its config.yaml (as the command writes it) is accepted as is
def _captured(monkeypatch, module: str, name: str) -> dict:
    seen: dict = {}

    def fake(*args, **kwargs):
        seen["args"], seen["kwargs"] = args, kwargs
        raise SystemExit(0)

    monkeypatch.setattr(f"{module}.{name}", fake)
    return seen


def _accepts(tmp_path, capsys, monkeypatch, argv, config: dict, target: tuple[str, str]):
    f = tmp_path / "config.yaml"
    f.write_text(yaml.safe_dump(config, sort_keys=False))
    seen = _captured(monkeypatch, *target)
    with pytest.raises(SystemExit):
        cli.run([*argv, "--config", str(f), "--out", str(tmp_path / "o")])
    assert "args" in seen, capsys.readouterr().err
    return seen


def test_improve_config_yaml_is_accepted_and_nested_flags_override(tmp_path, capsys, monkeypatch):
    from selfteach.improve.loop import ImproveConfig

    written = ImproveConfig(
        model="tiny-random", samples=4, dpo={"beta": 0.3, "epochs": 1.0}
    ).model_dump(mode="json")
    seen = _accepts(
        tmp_path,
        capsys,
        monkeypatch,
        ["improve", "--lr", "1e-5"],
        written,
        ("selfteach.improve.loop", "run_improve"),
    )
    cfg = seen["args"][0]
    assert (cfg.samples, cfg.dpo.beta, cfg.dpo.epochs, cfg.dpo.learning_rate) == (4, 0.3, 1.0, 1e-5)


def test_judge_and_train_configs_are_accepted(tmp_path, capsys, monkeypatch):
    from selfteach.judge.meta import MetaConfig
    from selfteach.judge.runner import JudgeRunConfig
    from selfteach.train.dpo import DPOArgs
    from selfteach.train.sft import SFTRunConfig

    judge = {
        **JudgeRunConfig(model="tiny-random", ks=[1, 2]).model_dump(mode="json"),
        "from_run": "runs/x",
    }
    seen = _accepts(
        tmp_path,
        capsys,
        monkeypatch,
        ["judge", "eval"],
        judge,
        ("selfteach.judge.pipeline", "judge_eval"),
    )
    assert seen["args"][0].ks == [1, 2] and seen["args"][3] == Path("runs/x")
    sft = SFTRunConfig(model="tiny-random", data="builtin:arithmetic", objective="deft").model_dump(
        mode="json"
    )
    seen = _accepts(
        tmp_path, capsys, monkeypatch, ["train", "sft"], sft, ("selfteach.train.sft", "train_sft")
    )
    assert seen["kwargs"]["objective"] == "deft"
    meta = {
        **MetaConfig(backbone="tiny-random", epochs=3).model_dump(mode="json"),
        "judgments": ["j.jsonl"],
    }
    seen = _accepts(
        tmp_path,
        capsys,
        monkeypatch,
        ["judge", "train-meta"],
        meta,
        ("selfteach.judge.pipeline", "train_meta_run"),
    )
    assert seen["args"][0].epochs == 3 and seen["args"][1] == [Path("j.jsonl")]
    dpo = DPOArgs(model="tiny-random", beta=0.2).model_dump(mode="json")
    (tmp_path / "p.jsonl").write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    seen = _accepts(
        tmp_path,
        capsys,
        monkeypatch,
        ["train", "dpo", "--pairs", str(tmp_path / "p.jsonl")],
        dpo,
        ("selfteach.train.dpo", "train_dpo"),
    )
    assert seen["args"][1].beta == 0.2


# ---- a bad --config file: one line naming file, line and key; exit 2; nothing written ---------
BAD = [
    (
        "model: tiny-random\nsampels: 2\n",
        "config.yaml:2: unknown setting 'sampels' for selfteach eval accuracy "
        "(did you mean 'samples'?)",
    ),
    (
        "model: tiny-random\nlimit: 2\nsamples: 0\n",
        "config.yaml:3: samples 0: must be greater than or equal to 1",
    ),
    ("temperature: hot\n", "config.yaml:1: temperature 'hot': must be a valid number"),
    ("model: [unclosed\n", "config.yaml:2: malformed YAML"),
    ("- a\n- b\n", "config.yaml: expected a mapping of settings"),
    ("fields: 3\n", "config.yaml:1: fields 3: must be a valid dictionary"),
    ("model: 5\n", "config.yaml:1: model 5: must be a valid string"),
]


@pytest.mark.parametrize("text,expect", BAD, ids=[b[1].split(": ", 1)[1][:30] for b in BAD])
def test_bad_config_file_is_one_line(tmp_path, capsys, text, expect):
    f = tmp_path / "config.yaml"
    f.write_text(text)
    rc, out, err = _run(["eval", "accuracy", "--config", f, "--out", tmp_path / "r"], capsys)
    assert rc == 2 and err.count("\n") == 1 and expect in err, err
    assert not (tmp_path / "r").exists()


def test_bad_config_file_other_cases(tmp_path, capsys):
    rc, _, err = _run(
        ["eval", "accuracy", "--config", tmp_path / "none.yaml", "--out", tmp_path / "r"], capsys
    )
    assert rc == 2 and "--config" in err and "file not found" in err
    rc, _, err = _run(["eval", "accuracy", "--config", tmp_path, "--out", tmp_path / "r"], capsys)
    assert rc == 2 and "no config.yaml in that directory" in err
    f = tmp_path / "improve.yaml"
    f.write_text("model: tiny-random\ndpo:\n  beta: 0\n")
    rc, _, err = _run(["improve", "--config", f, "--out", tmp_path / "r"], capsys)
    assert rc == 2 and "improve.yaml:2: dpo.beta 0: must be greater than 0" in err, err
    f.write_text("claims: 5\n")
    rc, _, err = _run(
        ["elicit", "--model", "tiny-random", "--config", f, "--out", tmp_path / "r"], capsys
    )
    assert rc == 2 and "improve.yaml:1: claims 5: must be a valid string" in err, err
    # a flag given fixes the file's bad value; a required option may come from the file
    f.write_text("samples: 0\nmodel: tiny-random\n")
    rc, _, err = _run(
        ["eval", "accuracy", "--config", f, "--samples", "x", "--out", tmp_path / "r"], capsys
    )
    assert rc == 2 and "--samples 'x'" in err
    f.write_text("model: tiny-random\n")
    rc, _, err = _run(["elicit", "--config", f, "--out", tmp_path / "r"], capsys)
    assert rc == 2 and "missing option --claims (give it, or a --config file that sets it)" in err
    assert not (tmp_path / "r").exists()

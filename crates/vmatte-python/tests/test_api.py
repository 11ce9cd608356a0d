# SPDX-License-Identifier: GPL-3.0-or-later
"""The package's `vmatte` script and `vmatte.matte`/`batch`/`models`
against the Rust binary built from the same tree."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vmatte
from vmatte_testing import run_rust

SCRIPT = Path(sys.executable).with_name("vmatte")


def script(*args, env=None):
    return subprocess.run(
        [str(SCRIPT), *map(str, args)], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def files(root):
    """Every file under `root`, by relative path, with its bytes."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_script_is_the_rust_command(rust_bin):
    for args in (["--version"], ["matte", "--help"], ["presets"]):
        ours, theirs = script(*args), run_rust(rust_bin, *args)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), args
    bad = ["matte", "x.mp4", "-o", "out", "--downsample-ratio", "2"]
    ours, theirs = script(*bad), run_rust(rust_bin, *bad)
    assert ours.returncode == theirs.returncode == 2
    assert ours.stderr == theirs.stderr
    assert ours.stderr.startswith("vmatte: invalid value '2' for '--downsample-ratio")


def test_libav_is_the_wheels_own():
    """The extension loads the FFmpeg libraries bundled in the wheel
    (vmatte.libs/), not the system's, so it runs where none is installed."""
    import vmatte._native  # noqa: F401

    maps = Path("/proc/self/maps").read_text().splitlines()
    loaded = {line.split()[-1] for line in maps if "libavcodec" in line or "libavformat" in line}
    assert loaded, "libavcodec is not loaded"
    assert all("/vmatte.libs/" in path for path in loaded), loaded


def _without_timing(report):
    """A report without what depends on the clock or the output folder."""
    timing = {"seconds", "fps", "finish_seconds", "decode_seconds", "model_seconds", "encode_seconds",
              "stages", "outputs"}
    return {k: v for k, v in report.items() if k not in timing}


def test_matte_matches_the_command_byte_for_byte(rust_bin, sample, models, tmp_path):
    theirs = run_rust(rust_bin, "matte", sample, "-o", tmp_path / "cli", "--model-dir", models,
                      "--max-frames", "24", "--json")
    assert theirs.returncode == 0, theirs.stderr
    cli_report = json.loads(theirs.stdout)
    [report] = vmatte.matte([sample], tmp_path / "py", model_dir=models, max_frames=24)
    a, b = files(tmp_path / "cli"), files(tmp_path / "py")
    assert a.keys() == b.keys() and a, (a.keys(), b.keys())
    for name in a:
        assert a[name] == b[name], f"{name} differs"
    assert report["frames"] == cli_report["frames"] == 24
    assert _without_timing(report) == _without_timing(cli_report)
    assert set(report["outputs"]) == set(cli_report["outputs"])


def _cli_line(rust_bin, args):
    out = run_rust(rust_bin, *args)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("vmatte: ")]
    return lines[-1][len("vmatte: "):]


@pytest.mark.parametrize(
    "options, flags, error",
    [
        (dict(downsample_ratio=2), ["--downsample-ratio", "2"], vmatte.OptionError),
        (dict(outputs="sparkles"), ["--outputs", "sparkles"], vmatte.OptionError),
        (dict(outputs=["alpha"], despill="green"), ["--outputs", "alpha", "--despill", "green"], vmatte.OptionError),
        (dict(matte_levels="0.9,0.1"), ["--matte-levels", "0.9,0.1"], vmatte.OptionError),
        (dict(model="rvm-nonexistent"), ["--model", "rvm-nonexistent"], vmatte.ModelError),
    ],
)
def test_bad_options_raise_with_the_commands_message(rust_bin, sample, models, tmp_path, options, flags, error):
    expected = _cli_line(rust_bin, ["matte", sample, "-o", tmp_path / "cli", "--model-dir", models, *flags])
    with pytest.raises(error) as caught:
        vmatte.matte(sample, tmp_path / "py", model_dir=models, **options)
    assert str(caught.value) == expected
    assert isinstance(caught.value, vmatte.VmatteError)
    assert not (tmp_path / "py").exists() or not any((tmp_path / "py").iterdir())


def test_keywords_the_command_does_not_have(sample, tmp_path):
    with pytest.raises(vmatte.OptionError, match="no option 'downsample_rati'; did you mean downsample_ratio"):
        vmatte.matte(sample, tmp_path, downsample_rati=0.5)
    with pytest.raises(vmatte.OptionError, match="strict is a switch: True or False"):
        vmatte.matte(sample, tmp_path, strict="yes")


def test_a_failed_input_raises_after_the_others(rust_bin, sample, models, tmp_path):
    missing = tmp_path / "missing.mp4"
    expected = _cli_line(rust_bin, ["matte", missing, "-o", tmp_path / "cli", "--model-dir", models])
    with pytest.raises(vmatte.InputError) as caught:
        vmatte.matte([missing, sample], tmp_path / "py", model_dir=models, max_frames=4)
    e = caught.value
    assert str(e) == expected
    assert [r.get("error") is None for r in e.results] == [False, True]
    assert e.failures == [e.results[0]]
    # Without check, the same as values.
    results = vmatte.matte([missing], tmp_path / "py2", model_dir=models, check=False)
    assert results[0]["error"] == expected


def test_batch(sample, models, tmp_path):
    report = vmatte.batch([sample], tmp_path, model_dir=models, max_frames=6, outputs=["alpha"])
    assert report["done"] == 1 and report["failed"] == 0, report
    assert (tmp_path / "astronaut.alpha.mp4").exists()
    # Run again: the job store says it is done already.
    again = vmatte.batch([sample], tmp_path, model_dir=models, max_frames=6, outputs=["alpha"])
    assert again["skipped"] == 1, again


def test_models(rust_bin, models, fixtures, tmp_path):
    rows = {r["name"]: r for r in vmatte.models.list(models)}
    assert rows["rvm-mobilenetv3"]["installed"] and not rows["gvm"]["installed"]
    installed = vmatte.models.import_(fixtures / "gvm" / "weights", name="gvm", model_dir=tmp_path)
    assert [r["name"] for r in installed] == ["gvm"]
    expected = _cli_line(rust_bin, ["models", "install", "sparkles", "--model-dir", tmp_path])
    with pytest.raises(vmatte.VmatteError) as caught:
        vmatte.models.install("sparkles", model_dir=tmp_path)
    assert str(caught.value) == expected


def test_matanyone_with_a_mask_from_rvm(sample, models, fixtures, tmp_path):
    """MatAnyone through the same keywords as the CLI's flags: imported from
    the tiny fixture, the mask made by RVM (installed in `models`)."""
    model_dir = tmp_path / "models"
    shutil.copytree(models, model_dir)
    rows = vmatte.models.import_(fixtures / "matanyone" / "weights", name="matanyone", model_dir=model_dir)
    assert {r["name"] for r in rows} == {"rvm-mobilenetv3", "matanyone"}
    [report] = vmatte.matte(
        sample,
        tmp_path / "out",
        model="matanyone",
        mask="auto",
        max_size=144,
        warmup=0,
        max_frames=2,
        outputs=["alpha"],
        format="png",
        model_dir=model_dir,
    )
    assert report["frames"] == 2
    with pytest.raises(vmatte.OptionError) as caught:
        vmatte.matte(sample, tmp_path / "bad", mask_at=["5=x.png"], model_dir=model_dir)
    assert "add --model matanyone" in str(caught.value)


def test_ctrl_c_stops_cleanly_and_the_gil_is_free(sample, models, tmp_path):
    """SIGINT in the middle of `matte`: KeyboardInterrupt, nothing under a
    final name; meanwhile another Python thread ran."""
    code = textwrap.dedent(
        f"""
        import signal, threading, time, vmatte, sys
        # Python leaves SIGINT ignored when it started so (a job a
        # non-interactive shell put in the background): the test is about
        # what vmatte does with a Ctrl-C, so the child takes it as a
        # terminal's would.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ticks = 0
        def tick():
            global ticks
            while True:
                ticks += 1
                time.sleep(0.01)
        threading.Thread(target=tick, daemon=True).start()
        print("started", flush=True)
        try:
            vmatte.matte([{str(sample)!r}] * 50, {str(tmp_path / "out")!r}, model_dir={str(models)!r})
        except KeyboardInterrupt:
            print("interrupted", ticks, flush=True)
            sys.exit(0)
        print("finished", flush=True)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "started"
    import time

    time.sleep(3)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
    word, ticks = out.split()
    assert word == "interrupted"
    assert int(ticks) > 50, "the other thread hardly ran: the GIL was held"
    left = sorted(q.name for q in (tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert all(name.startswith(".") or name.startswith("astronaut") for name in left), left
    # What is there is whole: every finished input's outputs; no partial file.
    assert not [n for n in left if "partial" in n], left


def test_the_stub_lists_every_option():
    """vmatte/__init__.pyi spells out matte()'s keywords: the command's
    options, all of them, so editors complete every one."""
    stub = (Path(vmatte.__file__).parent / "__init__.pyi").read_text()
    section = stub[stub.index("def matte("):stub.index("def batch(")]
    for o in vmatte.options("matte"):
        assert f"    {o['name']}:" in section, f"{o['name']} is missing from matte() in __init__.pyi"
    section = stub[stub.index("def batch("):stub.index("def finish(")]
    for o in vmatte.options("batch"):
        assert f"    {o['name']}:" in section, f"{o['name']} is missing from batch() in __init__.pyi"

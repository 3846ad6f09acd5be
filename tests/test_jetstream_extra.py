"""Without the nats extra lunettes works as before, and a configuration that asks for
JetStream says which extra to install."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from lunettes.pipeline import DEFAULT_CONFIG_DIR

SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["nats"] = None  # as if nats-py were not installed
    from pathlib import Path
    from lunettes.config.errors import ConfigError
    from lunettes.pipeline import Pipeline, load_config

    config = Path(sys.argv[1])
    data = load_config(config)
    data["sinks"] = {}
    data["sources"] = {"file": {"paths": [sys.argv[2]]}}
    print("file:", Pipeline.from_config(config, data).run()["pods_final"])
    data["sources"] = {"nats": {"consume": [0]},
                       "webhook": {"nats": {"servers": ["nats://127.0.0.1:4222"]}}}
    try:
        Pipeline.from_config(config, data)
    except ConfigError as exc:
        print("\\n".join(exc.problems))
""")


def test_without_the_nats_extra_files_replay_and_jetstream_names_the_extra() -> None:
    sample = Path(__file__).resolve().parents[1] / "lunettes" / "data" / "sample-audit.jsonl.gz"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(DEFAULT_CONFIG_DIR),
                           str(sample)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "file: 300"  # the sample's Pods, without NATS
    for key in ("sources.nats: nats:", "sources.webhook.nats:"):
        wanted = re.compile(rf"{re.escape(key)} needs an optional dependency \(nats[.\w]*\); "
                            r"install it with: pip install 'lunettes\[nats\]'$")
        assert any(wanted.search(line) for line in lines), (key, lines)

"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_example_runs(capsys):
    blocks = python_blocks(README.read_text())
    assert blocks, "README.md has no ```python block"

    namespace: dict = {"__name__": "readme_example"}
    exec(compile(blocks[0], "README.md example", "exec"), namespace)

    output = capsys.readouterr().out
    match = re.search(r"test accuracy (\d+\.\d)%", output)
    assert match, f"unexpected output: {output!r}"
    # Three epochs of Alrao on digits learn far beyond chance (10 %); seed 0 gives 96.7 %.
    assert float(match.group(1)) > 90.0

"""Names the CLI lists in its help at every start-up; kept free of torch so start-up stays fast."""

from pathlib import Path

SOURCES = ("digits", "cifar10:PATH", "cifar100:PATH", "svhn:PATH", "imagefolder:PATH")
SPLITS = ("test", "val", "train")
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


def available() -> list[str]:
    """The bundled recipe names."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))

"""Import-only stand-in (see the package docstring)."""


def __getattr__(name):
    raise AttributeError(f"torchvision.transforms is a test stub here (no {name!r})")

"""Packaging beyond pyproject.toml: the top-level ``schemas/`` and ``deploy/`` directories
ship inside the wheel as ``privops.contract.schemas`` / ``privops.contract.deploy``
(see privops/contract/__init__.py), so a non-editable install runs without the source."""

from setuptools import find_packages, setup

DATA_PACKAGES = {"privops.contract.schemas": "schemas", "privops.contract.deploy": "deploy"}

setup(
    packages=[*find_packages(include=["privops*", "streams*", "agents*"]), *DATA_PACKAGES],
    package_dir=DATA_PACKAGES,
    package_data={
        # PEP 561: a connector built on the SDK is type-checked against it.
        "privops": ["py.typed"],
        "privops.contract.schemas": ["*/*.avsc"],
        "privops.contract.deploy": [
            "*.yaml",
            "**/*.yml",
            "**/*.yaml",
            "**/*.json",
            "**/*.xml",
            "**/*.template",
            "**/*.properties",
            "**/*.md",
        ],
    },
)

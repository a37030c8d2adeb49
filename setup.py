"""gridd: a peer-to-peer machine-learning grid on IPFS."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="gridd",
    version="0.1.0",
    description="Peer-to-peer machine-learning grid on IPFS: remote Keras training and "
    "serverless federated learning over a Tangle",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["gridd", "gridd.*", "tangle", "tangle.*"]),
    package_data={"gridd.web": ["static/*"]},  # the web view's page, JS and CSS
    install_requires=requirements,
    extras_require={
        # Jupyter: RemoteHistory/SweepResult.plot() draw with matplotlib; with ipywidgets
        # tqdm.auto renders fit/sweep progress as widgets instead of text.
        "notebook": ["matplotlib>=3.8,<4", "ipywidgets>=8.1,<9"],
    },
    entry_points={
        "console_scripts": [
            "gridd=gridd.cli:main",
            "start_worker=gridd.cli:start_worker_main",
        ]
    },
)

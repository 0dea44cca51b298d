# syntax=docker/dockerfile:1
#
# nst-bot: the style-transfer Discord bot with PyTorch and VGG-19 weights baked in.
#
#   docker build -t nst-bot:cu130 .                                 # CUDA (default), needs BuildKit
#   docker build -t nst-bot:cpu --build-arg TORCH_VARIANT=cpu .     # CPU only: without NVIDIA's libraries
#   docker run -d --init --gpus all -e DISCORD_TOKEN -v nst-bot-data:/data --stop-timeout 90 nst-bot:cu130
#
# TORCH_VARIANT names one of PyTorch's wheel indexes, https://download.pytorch.org/whl/<variant>:
# "cu130" (default; CUDA 13.0 needs an NVIDIA driver >= 580 on the host) or "cpu" (any x86-64 host).
# Another CUDA variant (e.g. "cu126" for older drivers) works if PyTorch publishes torch for it at
# the version constraints.txt pins. TORCH_INDEX_URL overrides the index (a mirror, say).
# "pypi" takes PyPI's own build instead (whatever index pip is configured with): on Linux x86-64 that
# is also a CUDA 13.0 build with NVIDIA's libraries, versioned plain "2.14.1" (CI builds this one).
#
# The VGG-19 weights: downloaded through torchvision by default. Without access to PyTorch's download
# site, give a local file: a folder as the build context "vgg19-weights", the file's name and its
# SHA-256 (checked before use), e.g. torchvision's own vgg19-dcbb9e9d.pth:
#   docker build --build-context vgg19-weights=./weights --build-arg VGG19_WEIGHTS_FILE=vgg19-dcbb9e9d.pth \
#     --build-arg VGG19_WEIGHTS_SHA256="$(sha256sum weights/vgg19-dcbb9e9d.pth | cut -d' ' -f1)" -t nst-bot:cu130 .
#
# Where the CUDA libraries come from: PyTorch's CUDA wheels depend on NVIDIA's runtime libraries as
# pip packages (nvidia-cublas, nvidia-cudnn-cu13, ...: about 3.2 GB) and load those, never a system
# CUDA. So the base is plain python:3.11-slim (the Python CI tests) rather than nvidia/cuda:*-runtime,
# which would add a second, unused copy of the same libraries (~2-3 GB) and a different Python. The
# one thing the image lacks is the driver (libcuda.so), which is the host's and which the NVIDIA
# Container Toolkit mounts in when the container is started with --gpus (compose: a device reservation).
#
# Stages: requirements -> deps (venv: torch + dependencies) -> app (the project) -> weights (the
# compact VGG-19 file) -> runtime. The runtime stage gets the dependency venv, the project, the
# weights file, the config and one built-in style (examples/style.jpg, as /opt/nst/styles/swirls.jpg):
# no compiler (none is needed: every dependency ships a wheel), no pip cache, no sources, tests, bench
# or other examples. Dependencies and the project are separate layers: a
# change to the bot's code alone rebuilds (and, with the build cache kept, pushes) under 1 MB.
#
# Stopping: SIGTERM makes the bot refuse new jobs and give running ones bot.shutdown_grace seconds
# (60 by default) to finish, then up to ~15 s to post the results. Give it longer than that before
# Docker's SIGKILL: `docker stop -t 90` / `docker run --stop-timeout 90` / compose stop_grace_period.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG TORCH_VARIANT=cu130


# ---------------------------------------------------------------------------------------------- base
FROM ${PYTHON_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# PYTHONDONTWRITEBYTECODE: imports never write .pyc files (the bytecode is precompiled below, and the
# runtime user cannot write to the venv anyway); PATH: the project's scripts, then the venv's.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/app/bin:/opt/venv/bin:$PATH


# -------------------------------------------------------------------------------------- requirements
# The dependency list from pyproject.toml ([project] dependencies + the "bot" and "scale" extras). Only this file
# (compared by content) reaches the deps stage, so editing pyproject.toml's version or tool settings
# does not reinstall several GB of dependencies.
FROM base AS requirements
WORKDIR /build
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = p['optional-dependencies']; \
print('\n'.join(p['dependencies'] + extras['bot'] + extras['scale']))" > requirements.txt


# ---------------------------------------------------------------------------------------------- deps
FROM base AS deps
ARG TORCH_VARIANT
ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /build
# The venv gets a RUN of its own: "python" in later RUNs must resolve to it, not to the path the shell
# cached before it existed.
RUN python -m venv /opt/venv
# torch and torchvision: exactly the versions constraints.txt pins, as the wanted build (for example
# 2.14.1+cu130), from PyTorch's index only; --no-deps, so nothing else comes from that index. "pypi":
# the plain versions from pip's configured index (TORCH_INDEX_URL, when given, replaces it).
COPY constraints.txt ./
RUN case "${TORCH_VARIANT}" in cpu|cu[0-9]*) label="+${TORCH_VARIANT}" ;; pypi) label="" ;; \
      *) echo "TORCH_VARIANT must be cpu, cuNNN (e.g. cu130) or pypi, got '${TORCH_VARIANT}'" >&2; exit 1 ;; esac \
 && if [ -n "${TORCH_INDEX_URL}" ]; then export PIP_INDEX_URL="${TORCH_INDEX_URL}"; \
    elif [ -n "${label}" ]; then export PIP_INDEX_URL="https://download.pytorch.org/whl/${TORCH_VARIANT}"; fi \
 && torch_version="$(sed -n 's/^torch==//p' constraints.txt)" \
 && torchvision_version="$(sed -n 's/^torchvision==//p' constraints.txt)" \
 && pip install --no-cache-dir --no-compile --no-deps \
      "torch==${torch_version}${label}" "torchvision==${torchvision_version}${label}"
# Everything else from PyPI under constraints.txt: the project's dependencies and torch's own (for a
# CUDA build, the nvidia-* runtime libraries). The installed 2.14.1+<variant> satisfies the pin
# torch==2.14.1 (PEP 440 ignores the local "+<variant>" part when the pin has none), so pip keeps it;
# the check after the install proves that it was not replaced by PyPI's build (whose installed version
# is the plain pin; its torch.__version__ still says "+cu130"), and that only "cpu" lacks CUDA.
# Bytecode: compiled once, as unchecked-hash .pyc files that stay valid whatever mtimes the files get
# in the image layers (COPY, reproducible builds with rewritten timestamps). Without them every
# process, the bot and each of its workers, would compile torch's Python code in memory at import
# (measured: 9-10 s instead of 3.7 s to import torch and the bot), for ~165 MB of .pyc files.
# torch/testing/_internal is skipped: it holds syntax of newer Pythons, and the bot never imports it.
# The .pth file puts the project, installed under /opt/app by the next stage, on the venv's sys.path.
COPY --from=requirements /build/requirements.txt ./
RUN pip install --no-cache-dir --no-compile -c constraints.txt -r requirements.txt \
 && python -c "import sys, torch; from importlib.metadata import version; \
want = '$(sed -n 's/^torch==//p' constraints.txt)' + ('' if '${TORCH_VARIANT}' == 'pypi' else '+${TORCH_VARIANT}'); \
sys.exit(0 if version('torch') == want and (torch.version.cuda is None) == want.endswith('+cpu') \
else f'torch {version(\"torch\")} (CUDA {torch.version.cuda}) is installed, {want} was wanted')" \
 && python -c "import pathlib, sysconfig; \
app = sysconfig.get_path('purelib', vars={'base': '/opt/app', 'platbase': '/opt/app'}); \
pathlib.Path(sysconfig.get_path('purelib'), 'nst_bot_app.pth').write_text(app + '\n')" \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash -x '/torch/testing/_internal/' /opt/venv/lib


# ----------------------------------------------------------------------------------------------- app
# The project, installed (not editable) under its own prefix, so that it is a separate small layer.
FROM deps AS app
COPY README.md pyproject.toml ./
COPY nst ./nst
COPY bot ./bot
RUN pip install --no-cache-dir --no-compile --prefix /opt/app -c constraints.txt ".[bot,scale]" \
 && python -m compileall -q --invalidation-mode unchecked-hash /opt/app/lib \
 && pip check \
 && nst-bot --help > /dev/null \
 && nst-worker --help > /dev/null \
 && nst --help > /dev/null


# ------------------------------------------------------------------------------------------- weights
# Empty unless `--build-context vgg19-weights=FOLDER` replaces it with a folder holding the local file.
FROM scratch AS vgg19-weights

# VGG-19 (IMAGENET1K_V1) through torchvision, once, at build time: torch.hub downloads
# vgg19-dcbb9e9d.pth (548 MB) and checks that its SHA-256 starts with dcbb9e9d. The download lives
# in a BuildKit cache mount, never in a layer: only the compact features-only file (~52 MB) that
# export-weights writes goes on, with its SHA-256 recorded next to it (checked again in the runtime
# stage). The cached download's hash prefix is rechecked here, since torch.hub checks it only when
# it downloads. A local file (VGG19_WEIGHTS_FILE: torchvision's full file or a features-only one)
# must match VGG19_WEIGHTS_SHA256 in full; export-weights then loads it (keys and shapes checked).
FROM app AS weights
ARG VGG19_WEIGHTS_FILE=""
ARG VGG19_WEIGHTS_SHA256=""
RUN --mount=type=cache,target=/cache/torch,id=nst-torch-hub,sharing=locked \
    --mount=type=bind,from=vgg19-weights,target=/vgg19-weights \
    if [ -n "${VGG19_WEIGHTS_FILE}" ]; then \
      printf '%s  %s\n' "${VGG19_WEIGHTS_SHA256:?must be given with VGG19_WEIGHTS_FILE}" \
        "/vgg19-weights/${VGG19_WEIGHTS_FILE}" > /tmp/vgg19-weights.sha256 \
      && sha256sum --check --strict /tmp/vgg19-weights.sha256 \
      && python -m nst export-weights /opt/nst/vgg19-features.pth --weights "/vgg19-weights/${VGG19_WEIGHTS_FILE}"; \
    else \
      TORCH_HOME=/cache/torch python -m nst export-weights /opt/nst/vgg19-features.pth --weights torchvision \
      && case "$(sha256sum /cache/torch/hub/checkpoints/vgg19-dcbb9e9d.pth)" in dcbb9e9d*) ;; \
           *) echo "cached vgg19-dcbb9e9d.pth fails its hash check: clear the nst-torch-hub build cache" >&2; exit 1 ;; esac; \
    fi \
 && sha256sum /opt/nst/vgg19-features.pth > /opt/nst/vgg19-features.pth.sha256


# ------------------------------------------------------------------------------------------- runtime
FROM base AS runtime
ARG TORCH_VARIANT
LABEL org.opencontainers.image.title="nst-bot" \
      org.opencontainers.image.description="Neural style transfer (Gatys et al., VGG-19) as a self-hosted Discord bot" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT" \
      io.nst-bot.torch-variant="${TORCH_VARIANT}"

# Run time writes go to /data (the database) and /tmp only, so the container also runs with a
# read-only root filesystem (compose.yaml does): HOME and every cache point into /tmp. TORCH_HOME is
# never used for weights (the config names the baked file); CUDA_CACHE_PATH is the PTX JIT cache.
# NVIDIA_DRIVER_CAPABILITIES: what the NVIDIA Container Toolkit mounts in (no effect on the CPU image).
ENV HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TORCH_HOME=/tmp/torch \
    CUDA_CACHE_PATH=/tmp/.nv/ComputeCache \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# A fixed UID/GID, so that bind mounts and secrets can be given to it: chown 10001:10001.
RUN groupadd --system --gid 10001 nst \
 && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin nst \
 && mkdir -p /data \
 && chown 10001:10001 /data

COPY --from=deps /opt/venv /opt/venv
COPY --from=weights /opt/nst /opt/nst
COPY --from=app /opt/app /opt/app
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/nst-healthcheck
COPY docker/config.toml /etc/nst-bot/config.toml
# The built-in named styles (styles.builtin_dir in the config): the project's example style. Mount a
# folder of images over /opt/nst/styles (read-only) to offer your own instead.
COPY examples/style.jpg /opt/nst/styles/swirls.jpg

# The weights arrived intact and load with the installed code (keys and shapes are checked); torch
# leaves an empty torchinductor_<user> folder in /tmp, removed so that the image's /tmp is empty.
RUN sha256sum -c /opt/nst/vgg19-features.pth.sha256 \
 && python -c "from nst.model import load_vgg19; load_vgg19('/opt/nst/vgg19-features.pth', device='cpu')" \
 && rm -rf /tmp/torchinductor_root

# The SQLite database (bot.sqlite3, WAL mode): a named volume, or a host folder owned by 10001:10001.
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001

# The bot's /healthz: 200 when healthy, 503 otherwise. It listens on 127.0.0.1:8080 inside the
# container ([web] in the config); change both together. No EXPOSE: it is not meant to be published.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["nst-healthcheck", "http://127.0.0.1:8080/healthz"]

STOPSIGNAL SIGTERM
# The same image runs Celery workers for scale-out: entrypoint /opt/app/bin/nst-worker (compose.scale.yaml).
ENTRYPOINT ["/opt/app/bin/nst-bot"]
CMD ["--config", "/etc/nst-bot/config.toml"]

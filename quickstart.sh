#!/usr/bin/env bash
# Quick start: install what is missing, build vitc, and run it on the ViT-22B example.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install-deps.sh
scripts/build.sh
vitc=build/tools/vitc

echo
echo "== vitc stats examples/vit22b.vit (21.7B parameters, no weights allocated)"
$vitc stats examples/vit22b.vit
echo
echo "== vitc compile examples/vit22b.vit --emit=ir -o build/vit22b.ir"
$vitc compile examples/vit22b.vit --emit=ir -o build/vit22b.ir
echo "wrote build/vit22b.ir ($(wc -l < build/vit22b.ir) lines); its first block:"
sed -n '/%l0.ln.w/,/%l0.res =/p' build/vit22b.ir

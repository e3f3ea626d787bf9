#!/usr/bin/env bash
# Checks the backbone seam (issue 20): outside crates/mpt-models/src no library or binary code
# names a concrete architecture. Code there branches on the model family
# (`FamilyModel::Encoder` / `FamilyModel::Seq2Seq`, `Family`), never on `t5::T5`, `bert::Bert`,
# their configs or an architecture name compared as a string. Tests may downcast to an
# architecture (`as_any().downcast_ref::<mpt_models::bert::Bert>()`) to test its internals.
# Prints the offending lines and exits 1 if any.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pattern='mpt_models::(t5|bert)\b|\b(t5|bert)::(T5|Bert|T5Config|BertConfig)\b|\bArch::(T5|Bert)\b|Backbone::(T5|Bert)\b|ModelConfig::(T5|Bert)\b|arch\(\)\.name\(\) *== *"|\.arch *== *"'
hits="$(grep -rnE "$pattern" crates/*/src --include='*.rs' | grep -v '^crates/mpt-models/src/' || true)"
if [[ -n "$hits" ]]; then
    echo "check-seams: code outside mpt-models names an architecture (branch on the family instead):"
    echo "$hits" | sed 's/^/  /'
    exit 1
fi
echo "check-seams: no architecture named outside crates/mpt-models/src"

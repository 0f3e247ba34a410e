#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 240
#
# Region annotations for a real slide flow through the same commands as
# everything else: two annotators' QuPath GeoJSON for CMU-1 (written here,
# for this test) are imported (consensus, agreement), a model is trained
# on the slide with them, the slide is analysed with that model, and eval
# scores it against the annotations.  train checks its options before
# reading any input (exit 2 naming option, value and range), a missing
# input exits 5, and a failed run leaves no --out directory behind.
set -u

. "$(dirname "$0")/../support/tap.sh"
tmp=${TMPDIR:-/tmp}
slide=${SLIDESCAN_DATA:-/nonexistent}/wsi/CMU-1-Small-Region.svs
if [ ! -f "$slide" ]; then
    skip "shared data absent: no real slide to annotate"
    echo "1..$n"
    exit 0
fi

# Rectangles in level-0 pixels: an ROI, tumour (epidermis-like dark band)
# and stroma; bob's tumour is narrower, and he uses the older
# classification form.
rect() {    # x y w h
    local x1=$(($1 + $3)) y1=$(($2 + $4))
    echo "[[[$1,$2],[$x1,$2],[$x1,$y1],[$1,$y1],[$1,$2]]]"
}
feature() { # class geometry annotator
    echo "{\"type\": \"Feature\", \"geometry\": {\"type\": \"Polygon\","
    echo "\"coordinates\": $2}, \"properties\": {\"classification\": $1,"
    echo "\"annotator\": \"$3\"}}"
}
cat >"$tmp/alice.geojson" <<JSON
{"type":"FeatureCollection","features":[
$(feature '{"name":"ROI"}' "$(rect 400 1000 1200 1600)" alice),
$(feature '{"name": "Tumor", "color": [0, 200, 0]}' \
    "$(rect 800 1200 400 600)" alice),
$(feature '{"name": "Stroma", "color": [200, 0, 0]}' \
    "$(rect 500 2000 1000 500)" alice)
]}
JSON
cat >"$tmp/bob.geojson" <<JSON
[$(feature '{"name":"roi"}' "$(rect 400 1000 1200 1600)" bob),
$(feature '"tumour"' "$(rect 800 1200 200 600)" bob),
$(feature '"Stroma"' "$(rect 500 2000 1000 500)" bob)]
JSON

slidescan annotations "$tmp/alice.geojson" "$tmp/bob.geojson" \
    --slide "$slide" --out "$tmp/ann" >"$tmp/ann.txt" 2>&1
check "annotations import exits 0" [ $? = 0 ]
check "consensus and per-annotator label maps written" \
    test -s "$tmp/ann/labels.png" -a -s "$tmp/ann/labels_alice.png" \
    -a -s "$tmp/ann/labels_bob.png"
ag=$tmp/ann/agreement.json
check "agreement has one pair" jtrue "$ag" 'len(d["pairs"]) == 1'
# bob's tumour is half of alice's: Dice 2·½/(1 + ½) = 2/3
check "tumour Dice between annotators is 2/3" \
    jtrue "$ag" 'abs(d["pairs"][0]["dice_tumor"] - 2 / 3) < 0.01'
check "stroma Dice between annotators is 1" \
    jtrue "$ag" 'abs(d["pairs"][0]["dice_stroma"] - 1) < 1e-9'
check "the agreement line prints both Dice values ($(grep vs "$tmp/ann.txt"))" \
    grep -q "^alice vs bob: Dice tumour 0\.6[0-9]*, stroma 1\.0000, kappa" \
    "$tmp/ann.txt"

# Neither annotator drew stroma: its Dice is undefined, null in the JSON
# and n/a on the terminal, never nan.
cat >"$tmp/carol.geojson" <<JSON
[$(feature '"Tumor"' "$(rect 800 1200 400 600)" carol)]
JSON
cat >"$tmp/dave.geojson" <<JSON
[$(feature '"Tumor"' "$(rect 800 1200 200 600)" dave)]
JSON
slidescan annotations "$tmp/carol.geojson" "$tmp/dave.geojson" \
    --slide "$slide" --out "$tmp/ann2" >"$tmp/ann2.txt" 2>&1
check "annotations without stroma exit 0" [ $? = 0 ]
check "stroma Dice is null in agreement.json" \
    jtrue "$tmp/ann2/agreement.json" 'd["pairs"][0]["dice_stroma"] is None'
check "stroma Dice prints n/a ($(grep vs "$tmp/ann2.txt"))" \
    grep -q "^carol vs dave: Dice tumour [0-9.]*, stroma n/a, kappa" \
    "$tmp/ann2.txt"
check "no nan printed by annotations" \
    bash -c '! grep -qi nan "$1"' _ "$tmp/ann2.txt"

slidescan train --out "$tmp/model" --slide "$slide" \
    --labels "$tmp/alice.geojson" --epochs 2 --steps 4 --batch 4 \
    --crop 64 --val-fraction 0 >"$tmp/train.txt" 2>&1
check "train on a GeoJSON-annotated slide exits 0" [ $? = 0 ]
check "two epochs in metrics.jsonl" \
    [ "$(wc -l <"$tmp/model/metrics.jsonl")" = 2 ]
check "model written" test -s "$tmp/model/model.safetensors"
slidescan train --out "$tmp/model" --slide "$slide" \
    --labels "$tmp/ann/labels.png" --epochs 3 --steps 4 --batch 4 \
    --crop 64 --val-fraction 0 --resume >"$tmp/resume.txt" 2>&1
check "resume from the checkpoint with consensus labels runs epoch 3 only" \
    [ "$(wc -l <"$tmp/model/metrics.jsonl")" = 3 ]

# Patches: the validation split is stratified by class.  Kather 2016 has
# 2 tumour, 4 stroma (2 stroma, 2 complex) and 3 background patches, the
# background from one source image: one patch of each class is held out,
# the shared source image is named as a warning, and scores that need
# validation slides read n/a, never nan.
patches=${SLIDESCAN_DATA:-/nonexistent}/patches/kather2016
if [ -f "$patches/labels.csv" ]; then
    slidescan train --patches "$patches" --out "$tmp/pmodel" --epochs 1 \
        --steps 3 >"$tmp/ptrain.txt" 2>"$tmp/ptrain.err"
    check "train on patches exits 0" [ $? = 0 ]
    check "3 validation patches" grep -q "^sources 9, validation 3$" \
        "$tmp/ptrain.txt"
    for c in glass tumor stroma; do
        check "one $c patch in validation" \
            awk -v c=$c 'f && $1 == c { n = $2 + $3 + $4 }
                         /^validation patches/ { f = 1 }
                         END { exit n != 1 }' "$tmp/ptrain.txt"
    done
    check "no nan printed" bash -c '! grep -qi nan "$1"' _ "$tmp/ptrain.txt"
    check "pixel Dice without validation slides reads n/a" \
        grep -q "dice tumour n/a stroma n/a" "$tmp/ptrain.txt"
    want="warning: the patches of class background all come from one"
    want="$want source image; one is held out for validation"
    check "the shared background source image is a warning" \
        grep -qF "$want" "$tmp/ptrain.err"
    # One stroma patch only: it trains, and validation cannot score it.
    mkdir -p "$tmp/few"
    head -1 "$patches/labels.csv" >"$tmp/few/labels.csv"
    grep -E ",(1|8)," "$patches/labels.csv" >>"$tmp/few/labels.csv"
    grep -m1 ",2," "$patches/labels.csv" >>"$tmp/few/labels.csv"
    for d in 01_TUMOR 02_STROMA 08_EMPTY; do
        ln -s "$patches/$d" "$tmp/few/$d"
    done
    slidescan train --patches "$tmp/few" --out "$tmp/fmodel" --epochs 1 \
        --steps 2 >"$tmp/ftrain.txt" 2>"$tmp/ftrain.err"
    check "train with a single stroma patch exits 0" [ $? = 0 ]
    want="warning: no validation example of class stroma (1 for training,"
    want="$want too few to hold one out): its scores are n/a"
    check "a class without a validation example is a warning" \
        grep -qF "$want" "$tmp/ftrain.err"
else
    skip "shared data absent: no labelled patches"
fi

# Options are checked before any input is read, inputs exist before any
# is loaded, and nothing is left behind by a failed run.
# tfail CODE TEXT ARGS...: train ARGS exits CODE, says TEXT, and leaves no
# $tmp/bad.
tfail() {
    local code=$1 text=$2 rc
    shift 2
    slidescan train --out "$tmp/bad" "$@" >/dev/null 2>"$tmp/terr"
    rc=$?
    echo "# train $*: exit $rc: $(cat "$tmp/terr")"
    check "train $* exits $code" [ $rc = "$code" ]
    check "... saying '$text'" grep -qF -- "$text" "$tmp/terr"
    check "... creating nothing" [ ! -e "$tmp/bad" ]
}
tfail 5 "slidescan train: --patches /nonexistent/p: No such file or \
directory" --patches /nonexistent/p
tfail 5 "slidescan train: --slide /nonexistent/s.svs: No such file or \
directory" --slide /nonexistent/s.svs --labels "$tmp/alice.geojson"
tfail 5 "slidescan train: --labels /nonexistent/l.png: No such file or \
directory" --slide "$slide" --labels /nonexistent/l.png
tfail 2 "slidescan train: --epochs: '0' is not a whole number from 1 to \
10000" --slide "$slide" --labels "$tmp/alice.geojson" --epochs 0
tfail 2 "slidescan train: --lr: '-1' is not a learning rate above 0 and \
at most 1" --slide "$slide" --labels "$tmp/alice.geojson" --lr -1
tfail 2 "slidescan train: --seed: '-1' is not a whole number from 0 to \
18446744073709551615" --slide "$slide" --labels "$tmp/alice.geojson" \
    --seed -1
tfail 2 "slidescan train: --crop: '20' is not a multiple of 8" \
    --slide "$slide" --labels "$tmp/alice.geojson" --crop 20
tfail 2 "slidescan train: --slide and --labels come in pairs: 1 --slide, \
0 --labels" --slide "$slide"
# An --init that is no model fails once --out exists: it goes again.
tfail 1 "slidescan train: " --slide "$slide" --labels "$tmp/alice.geojson" \
    --init "$tmp/alice.geojson" --epochs 1 --steps 1

slidescan analyse "$slide" --model "$tmp/model/model.safetensors" \
    --out "$tmp/pred" >/dev/null 2>&1
check "analyse with the trained model" test -s "$tmp/pred/results.json"
slidescan eval --pred "$tmp/pred" --truth "$tmp/alice.geojson" \
    --json "$tmp/eval.json" >"$tmp/eval.txt" 2>&1
check "eval against the GeoJSON exits 0" [ $? = 0 ]
# The tumour rectangle is 400 × 600 level-0 px = 100 × 150 analysis px at
# 4.008 level-0 px per pixel (±1 row or column at the edges).
ev=$tmp/eval.json
truth_px=$(json "$ev" 'd["classes"]["tumor"]["tp"] +
                      d["classes"]["tumor"]["fn"]')
check "eval sees exactly the annotated tumour pixels ($truth_px)" \
    python3 -c "import sys; sys.exit(not 99*149 <= $truth_px <= 101*151)"
check "unannotated pixels outside the ROI are ignored" \
    jtrue "$ev" 'd["ignored_pixels"] > 0'
check "glass inside the ROI counts as truth" \
    jtrue "$ev" 'd["classes"]["glass"]["tp"] + d["classes"]["glass"]["fn"] > 0'

echo "1..$n"

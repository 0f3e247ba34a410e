#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 120
#
# The client's eval on small files written here: field case A1 end to end
# (a Tumor polygon with a hole against a filled prediction: IoU 0.96, the
# hole scored as background, nothing ignored); truth and prediction whose
# sizes do not map onto each other refused with both files and sizes
# named, and accepted with --scale or at the slide's level 0 for an
# analysis directory; the tumour-stroma ratio's definition in
# results.json and in analyse's output.
set -u

. "$(dirname "$0")/../support/tap.sh"
png() {     # png FILE W H VALUE: a grey label PNG filled with VALUE
    python3 -c 'import struct, sys, zlib
p, w, h, v = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def chunk(t, d):
    return (struct.pack(">I", len(d)) + t + d +
            struct.pack(">I", zlib.crc32(t + d) & 0xffffffff))
raw = (b"\0" + bytes([v]) * w) * h
open(p, "wb").write(b"\x89PNG\r\n\x1a\n" +
    chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
    chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))' "$@"
}

tmp=${TMPDIR:-/tmp}

# --- A1: holes are holes ---------------------------------------------------
cat >"$tmp/a1.geojson" <<'JSON'
{"type": "FeatureCollection", "features": [{"type": "Feature",
 "geometry": {"type": "Polygon", "coordinates": [
   [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
   [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]]},
 "properties": {"classification": {"name": "Tumor"}}}]}
JSON
png "$tmp/pred_full.png" 10 10 1
slidescan eval --pred "$tmp/pred_full.png" --truth "$tmp/a1.geojson" \
    --json "$tmp/a1.json" >"$tmp/a1.txt" 2>&1
check "A1: eval exits 0" [ $? = 0 ]
echo "# $(grep -E '^(images|tumor )' "$tmp/a1.txt" | tr -s ' ' | tr '\n' ';')"
check "A1: tumour IoU 0.96 (1.00 would mean the hole was dropped)" \
    jtrue "$tmp/a1.json" 'abs(d["classes"]["tumor"]["iou"] - 0.96) < 1e-9'
check "A1: the text report says IoU 0.9600 too" \
    grep -Eq '^tumor +0\.9600 +1\.0000 +0\.9796 +0\.9600 ' "$tmp/a1.txt"
check "A1: no pixel ignored; the 4 hole pixels are background" \
    jtrue "$tmp/a1.json" 'd["ignored_pixels"] == 0 and
        d["confusion_truth_by_pred"][0][1] == 4 and
        d["classes"]["tumor"]["tp"] == 96'
png "$tmp/pred_12.png" 12 12 1
slidescan eval --pred "$tmp/pred_12.png" --truth "$tmp/a1.geojson" \
    --json "$tmp/a1b.json" >/dev/null 2>&1
check "A1 on 12 × 12: the 44 px outside every annotation are ignored" \
    jtrue "$tmp/a1b.json" 'd["ignored_pixels"] == 44 and
        abs(d["classes"]["tumor"]["iou"] - 0.96) < 1e-9'

# --- sizes must map onto each other ---------------------------------------
png "$tmp/pred.png" 10 10 1
png "$tmp/labels.png" 4000 4000 1
slidescan eval --pred "$tmp/pred.png" --truth "$tmp/labels.png" \
    >"$tmp/size.out" 2>"$tmp/size.err"
rc=$?
echo "# $(cat "$tmp/size.err")"
check "10×10 prediction against 4000×4000 truth: exit 1, no report" \
    [ $rc = 1 -a ! -s "$tmp/size.out" ]
want="truth $tmp/labels.png is 4000×4000 px, prediction $tmp/pred.png"
check "... the error names both files and both sizes" \
    grep -q "$want is 10×10 px" "$tmp/size.err"
slidescan eval --pred "$tmp/pred.png" --truth "$tmp/labels.png" \
    --scale 400 --json "$tmp/scaled.json" >/dev/null 2>&1
check "--scale 400 maps them: exit 0, 100 px compared" \
    jtrue "$tmp/scaled.json" 'd["classes"]["tumor"]["tp"] == 100'
slidescan eval --pred "$tmp/pred.png" --truth "$tmp/labels.png" \
    --scale 300 >/dev/null 2>&1
check "--scale 300 does not span the truth: exit 1" [ $? = 1 ]
slidescan eval --scale 4 --pred "$tmp/pred.png" --truth "$tmp/labels.png" \
    >/dev/null 2>&1
check "--scale before its pair is a usage error (exit 2)" [ $? = 2 ]
slidescan eval --pred "$tmp/pred.png" --truth "$tmp/labels.png" \
    --scale -1 >/dev/null 2>&1
check "--scale -1 is a usage error (exit 2)" [ $? = 2 ]

# --- reference values that cannot be used are refused, not ignored --------
png "$tmp/p8.png" 8 8 1
# ref_refused WHAT FILE CODE TEXT: eval with --ref FILE exits CODE, prints
# no report and says TEXT.
ref_refused() {
    slidescan eval --pred "$tmp/p8.png" --truth "$tmp/p8.png" \
        --ref "$2" >"$tmp/ref.out" 2>"$tmp/ref.err"
    local rc=$?
    echo "# $(cat "$tmp/ref.err")"
    check "$1: exit $3, no report, says '$4'" \
        [ $rc = "$3" -a ! -s "$tmp/ref.out" -a -n "$(grep -F -- "$4" \
          "$tmp/ref.err")" ]
}
ref_refused "a missing --ref file" "$tmp/noref.json" 5 \
    "reference values (--ref): $tmp/noref.json: No such file"
printf 'tsr=0.4\n' >"$tmp/garbage.json"
ref_refused "a --ref file that is not JSON" "$tmp/garbage.json" 1 \
    "reference values (--ref): $tmp/garbage.json: not JSON"
echo '[0.4]' >"$tmp/array.json"
ref_refused "a --ref file holding no JSON object" "$tmp/array.json" 1 \
    "$tmp/array.json: not a JSON object"
# A misspelt key would score nothing ("n/a (n=0)"): it is a usage error
# naming the key and the accepted ones, and so is a value that is no
# number.
echo '{"TSR": 0.439, "ki67": 0.2}' >"$tmp/tsr.json"
ref_refused "an unknown --ref key" "$tmp/tsr.json" 2 \
    "reference values (--ref): $tmp/tsr.json: unknown key \"TSR\"; the \
keys are tumor_stroma_ratio or tumor_fraction"
check "... the message lists ki67_index" grep -qF "ki67_index or \
ki67_fraction" "$tmp/ref.err"
echo '{"tumor_stroma_ratio": "0.4"}' >"$tmp/str.json"
ref_refused "a --ref value that is no number" "$tmp/str.json" 2 \
    "$tmp/str.json: \"tumor_stroma_ratio\" is \"0.4\": not a number"
# Values that cannot be a reference: each refused naming key, value and
# why, never scored.
ref_value_refused() {   # JSON TEXT
    printf '%s\n' "$1" >"$tmp/bad.json"
    ref_refused "--ref $1" "$tmp/bad.json" 2 "$tmp/bad.json: $2"
}
ref_value_refused '{"tumor_area_mm2": 0.3}' \
    '"tumor_area_mm2" is given without "stroma_area_mm2"; the two go together'
ref_value_refused '{"stroma_area_mm2": 0.3}' \
    '"stroma_area_mm2" is given without "tumor_area_mm2"; the two go together'
ref_value_refused '{"tumor_stroma_ratio": 1.5}' \
    '"tumor_stroma_ratio" is 1.5: a fraction must be in 0..1'
ref_value_refused '{"tumor_fraction": -0.2}' \
    '"tumor_fraction" is -0.2: a fraction must be in 0..1'
ref_value_refused '{"ki67_index": 1.2}' \
    '"ki67_index" is 1.2: a fraction must be in 0..1'
ref_value_refused '{"ki67_fraction": -0.1}' \
    '"ki67_fraction" is -0.1: a fraction must be in 0..1'
ref_value_refused '{"tumor_area_mm2": -1, "stroma_area_mm2": 2}' \
    '"tumor_area_mm2" is -1: an area cannot be negative'
ref_value_refused '{"areas_mm2": {"tumor": 1, "stroma": -2}}' \
    '"areas_mm2.stroma" is -2: an area cannot be negative'
ref_value_refused '{"area_um2": [0, 5, -1]}' \
    '"area_um2[2]" is -1: an area cannot be negative'
ref_value_refused '{"tumor_stroma_ratio": null}' \
    '"tumor_stroma_ratio" is null: a value key must hold a number'
ref_value_refused '{"ki67_index": 0.2, "ki67_index": 0.3}' \
    "duplicate object key near '\"ki67_index\"' at line 1: a key may be \
given once"
ref_value_refused '{"ki67_index": 0.2, "ki67_scope": "nuclei"}' \
    '"ki67_scope" is "nuclei": it must be "tumor" or "tissue"'
echo '{}' >"$tmp/empty.json"
ref_refused "--ref {}" "$tmp/empty.json" 2 \
    "no reference value in $tmp/empty.json; the keys are"
check "eval --help says null is refused and names ki67_scope" eval \
    'slidescan eval --help | tr -s " \n" "  " |
     grep -q "refused (exit 2), as is a value key that holds no number.*ki67_scope"'
echo '{"tumor_stroma_ratio": 0.25, "ki67_index": 0.5}' >"$tmp/good.json"
slidescan eval --pred "$tmp/p8.png" --truth "$tmp/p8.png" \
    --ref "$tmp/good.json" --json "$tmp/good.out.json" >/dev/null 2>&1
check "the accepted keys are read (exit $?)" \
    jtrue "$tmp/good.out.json" 'd["per_image"][0]["tsr"]["ref"] == 0.25 and
        d["per_image"][0]["ki67_index"]["ref"] == 0.5'
check "eval --help lists the accepted keys" eval 'slidescan eval --help |
    tr -s " \n" "  " | grep -qF "tumor_stroma_ratio or tumor_fraction"'

# --- an analysis directory at 2 µm/px against level-0 truth (0.5 µm/px) ---
slidescan phantom --out "$tmp/ph.tif" --labels "$tmp/ph.labels.png" \
    --truth "$tmp/ph.truth.json" --size-mm 1x1 --seed 5 >/dev/null 2>&1
slidescan analyse "$tmp/ph.tif" --model classical --out "$tmp/ph.analysis" \
    >"$tmp/analyse.txt" 2>/dev/null
check "analyse of a 1 × 1 mm phantom exits 0" [ $? = 0 ]
check "results.json states the ratio's definition" \
    jtrue "$tmp/ph.analysis/results.json" \
    'd["tumor_stroma_ratio_definition"] == "tumor / (tumor + stroma)"'
check "analyse prints the ratio as the tumour fraction of tumour+stroma" \
    grep -q "^tumour-stroma ratio .*(tumour fraction of tumour+stroma)" \
    "$tmp/analyse.txt"
slidescan eval --pred "$tmp/ph.analysis" --truth "$tmp/ph.labels.png" \
    --ref "$tmp/ph.truth.json" --json "$tmp/ph.json" >/dev/null 2>&1
check "level-0 truth (2000×2000) maps onto the 500×500 analysis" [ $? = 0 ]
check "... with every analysis pixel compared and the TSR scored" \
    jtrue "$tmp/ph.json" 'sum(map(sum, d["confusion_truth_by_pred"])) ==
        500 * 500 and d["tsr"]["n"] == 1'
ref_tsr=$(json "$tmp/ph.json" 'd["per_image"][0]["tsr"]["ref"]')
check "... against the truth's tumor_fraction ($ref_tsr), in [0, 1]" \
    jtrue "$tmp/ph.truth.json" 'abs(d["tumor_fraction"] - '"${ref_tsr:-9}"')
        < 1e-6 and 0 <= d["tumor_fraction"] <= 1 and "tumor_stroma_ratio" not in d'
# --- KI67 compared in the reference's scope ---------------------------------
# The phantom's ki67_fraction counts tumour nuclei; an analysis run with
# --ki67-scope tissue still holds the tumour scope's index, and eval
# compares that one and says so.
slidescan phantom --out "$tmp/k.tif" --labels "$tmp/k.labels.png" \
    --truth "$tmp/k.truth.json" --size-mm 1x1 --seed 5 --stain KI67 \
    >/dev/null 2>&1
slidescan analyse "$tmp/k.tif" --ki67-scope tissue --out "$tmp/k.analysis" \
    >/dev/null 2>&1
check "analyse --ki67-scope tissue of a KI67 phantom exits 0" [ $? = 0 ]
slidescan eval --pred "$tmp/k.analysis" --truth "$tmp/k.labels.png" \
    --ref "$tmp/k.truth.json" --json "$tmp/k.json" >"$tmp/k.txt" 2>&1
check "eval exits 0" [ $? = 0 ]
echo "# $(grep KI67 "$tmp/k.txt")"
check "KI67 is compared in the tumour scope: MAE < 0.01" \
    jtrue "$tmp/k.json" 'd["ki67_index"]["n"] == 1 and
        d["ki67_index"]["mae"] < 0.01 and d["ki67_index"]["scope"] == "tumor"
        and d["per_image"][0]["ki67_index"]["scope"] == "tumor"'
tumor_idx=$(json "$tmp/k.analysis/results.json" 'd["ki67"]["tumor"]["index"]')
check "... against the analysis's tumour index ($tumor_idx)" \
    jtrue "$tmp/k.json" \
    'd["per_image"][0]["ki67_index"]["pred"] == '"${tumor_idx:-9}"
check "the text report names the scope" \
    grep -Eq '^KI67 +MAE +0\.00[0-9]+ .*\(n=1, scope tumor\)$' "$tmp/k.txt"
printf '{"ki67_index": 0.13, "ki67_scope": "tissue"}\n' >"$tmp/kt.json"
slidescan eval --pred "$tmp/k.analysis" --truth "$tmp/k.labels.png" \
    --ref "$tmp/kt.json" --json "$tmp/kt.out.json" >/dev/null 2>&1
tissue_idx=$(json "$tmp/k.analysis/results.json" 'd["ki67"]["tissue"]["index"]')
check "ki67_scope tissue compares the tissue index ($tissue_idx)" \
    jtrue "$tmp/kt.out.json" \
    'd["per_image"][0]["ki67_index"]["pred"] == '"${tissue_idx:-9}"' and
        d["ki67_index"]["scope"] == "tissue"'

png "$tmp/crop.png" 1500 1500 1
slidescan eval --pred "$tmp/ph.analysis" --truth "$tmp/crop.png" \
    >/dev/null 2>"$tmp/crop.err"
rc=$?
echo "# $(cat "$tmp/crop.err")"
check "a truth map of neither size is refused, naming labels.png" \
    [ $rc = 1 -a -n "$(grep "ph.analysis/labels.png is 500×500 px" \
                       "$tmp/crop.err")" ]

echo "1..$n"

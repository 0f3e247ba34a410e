#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 240
#
# A reanalysis that fails leaves the previous analysis in place: its
# results.json, overlay and heat maps in the slide's analysis directory,
# its numbers in the catalogue, and `show` prints them after the failure.
# No half-written set is left beside them.  `show` of a KI67 slide
# analysed by the daemon prints the index with its scope, the other
# scope's index and a warning when the two are over 10 points apart
# (OS-2 from the Olympus scanner: 27 points with the default model).
. "$(dirname "$0")/../support/daemon_env.sh"

dtest_conf "[analysis]
model = classical"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
ok "slidescand starts"

astate() { sqlite3 "$DB" "SELECT state FROM analyses WHERE scan = $1"; }
anums() {
    sqlite3 "$DB" "SELECT tumor_area_mm2, stroma_area_mm2, tissue_area_mm2, \
        tumor_stroma_ratio, overlay_path, out_dir FROM analyses \
        WHERE scan = $1"
}

slidescan scan --slide A --stain HE >/dev/null
check "scan and analysis of A complete" wait_until 90 \
    'test "$(astate 1)" = done'
ADIR=$DATA/slides/A/analysis-s1
before=$(anums 1)
sum_before=$(cd "$ADIR" && sha256sum results.json overlay.png 2>/dev/null)
check "the analysis directory holds results.json and the overlay" \
    test -s "$ADIR/results.json" -a -s "$ADIR/overlay.png"

# A model file that is no model is refused at reload, naming it.
echo "not a model" >"$T/broken.safetensors"
sed -i "s|^model = classical|model = $T/broken.safetensors|" "$CONF"
out=$(slidescan reload 2>&1)
check "reload refuses a file that is no model, naming it ($out)" \
    grep -q "model: $T/broken.safetensors: not a safetensors file" <<<"$out"
# A good model, replaced by a broken file after the reload accepted it:
# the worker refuses it when the reanalysis runs.
cp "$ROOT/models/default.safetensors" "$T/broken.safetensors"
check "reload takes the model file while it is good" slidescan reload
echo "not a model" >"$T/broken.safetensors"
slidescan reanalyse 1 >/dev/null
check "the reanalysis with a broken model fails" wait_until 60 \
    'test "$(astate 1)" = failed'
check "results.json and the overlay survive, unchanged" \
    test "$(cd "$ADIR" && sha256sum results.json overlay.png 2>/dev/null)" \
    = "$sum_before"
check "the catalogue keeps the numbers and files ($before)" \
    test "$(anums 1)" = "$before"
check "no half-written set is left beside the analysis" \
    test ! -e "$ADIR.new" -a ! -e "$ADIR.old"
out=$(slidescan show A)
check "show says the analysis failed and names the model" \
    grep -q "analysis: failed: .*broken.safetensors" <<<"$out"
check "show still gives the previous numbers" \
    grep -q "tumour .* mm², stroma .* mm²" <<<"$out"
check "show still lists results.json's files" \
    grep -q "overlay .*/slides/A/analysis-s1/overlay.tif" <<<"$out"

sed -i "s|^model = .*broken.safetensors|model = classical|" "$CONF"
slidescan reload >/dev/null
slidescan reanalyse 1 >/dev/null
check "a reanalysis that succeeds replaces the set" wait_until 60 \
    'test "$(astate 1)" = done'
check "the new set is in place with its results.json" \
    test -s "$ADIR/results.json" -a ! -e "$ADIR.new"

f=${SLIDESCAN_DATA:-}/ihc_ki67/OS-2-vsi.ome.tif
if [ -z "${SLIDESCAN_DATA:-}" ] || [ ! -f "$f" ]; then
    skip "no OS-2-vsi.ome.tif under \$SLIDESCAN_DATA/ihc_ki67"
    dtest_end
    exit
fi
sed -i "/^model = classical/d" "$CONF"
slidescan reload >/dev/null
slidescan scan --slide K --stain KI67 --image "$f" >/dev/null
check "the KI67 slide is scanned and analysed with the default model" \
    wait_until 100 'test "$(astate 2)" = done'
out=$(slidescan show K)
sed 's/^/# /' <<<"$out" | grep -i "ki67\|tissue \|warning\|check"
res=$DATA/slides/K/analysis-s2/results.json
idx=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['ki67']
print('%.4f %.4f %d' % (d['tumor']['index'], d['tissue']['index'],
      abs(d['tumor']['index'] - d['tissue']['index']) > 0.10))" "$res")
read -r tum tis far <<<"$idx"
check "show gives the tumour-scope KI67 index with its scope ($tum)" \
    grep -q "^    KI67 index  *$tum (nuclei on tumour)$" <<<"$out"
check "show gives the tissue-scope index beside it ($tis)" \
    grep -q "^      on all tissue  *$tis$" <<<"$out"
check "the scopes are over 10 points apart on this slide" test "$far" = 1
check "show warns that the scopes differ" grep -q \
    "^    warning: the KI67 index on tumour and on all tissue differ by" \
    <<<"$out"
dtest_end

#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Rebuilds models/default.safetensors the way it was built, and the
# leave-one-source-image-out figures of MODEL_CARD.md:
#
#   1. nine phantom slides (H&E, KI67, CK; seeds 11, 12, 13; 2.5 × 2.5 mm at
#      0.5 µm/px) with exact label maps, from `slidescan phantom`;
#   2. `slidescan train` on them plus the labelled patches of
#      ../shared/data/patches, validating on the seed-13 phantoms and two
#      Kather source images, in two stages (see below);
#   3. `slidescan train --loso` over the patch source images: per fold, a
#      model trained from a phantom-only start on the phantoms and every
#      other patch group classifies the held-out group's patches.
#
#   models/train-default.sh WORKDIR        (takes about 30 min on 2 cores)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BUILD:-$root/build}/bin
data=${SLIDESCAN_DATA:-$root/../shared/data}
work=${1:?usage: train-default.sh WORKDIR}
mkdir -p "$work"

slides=()
val=""
for stain in HE KI67 CK; do
    for seed in 11 12 13; do
        f=$work/ph_${stain}_$seed
        [ -s "$f.tif" ] || "$bin/slidescan" phantom --stain "$stain" \
            --seed "$seed" --size-mm 2.5x2.5 --mpp 0.5 --out "$f.tif" \
            --labels "$f.labels.png" --truth "$f.truth.json" >/dev/null
        slides+=(--slide "$f.tif" --labels "$f.labels.png")
        [ "$seed" = 13 ] && val="$val${val:+,}ph_${stain}_$seed.tif"
    done
done
patches=(--patches "$data/patches/kather2016@0.495"
         --patches "$data/patches/nct_crc@0.5")

# Stage 1 from scratch, cross-entropy only; stage 2 fine-tunes with the
# soft Dice term at a quarter of the learning rate.
valg="$val,CRC-Prim-HE-07_022,CRC-Prim-HE-01_005"
"$bin/slidescan" train --out "$work/stage1" "${slides[@]}" "${patches[@]}" \
    --epochs 40 --steps 40 --patience 8 --dice 0 --val-groups "$valg" \
    --name slidescan-unet-1 | tee "$work/stage1.log"
"$bin/slidescan" train --out "$work/stage2" "${slides[@]}" "${patches[@]}" \
    --init "$work/stage1/model.safetensors" --lr 5e-4 --epochs 12 \
    --steps 40 --patience 6 --val-groups "$valg" | tee "$work/stage2.log"
cp "$work/stage2/model.safetensors" "$root/models/default.safetensors"

"$bin/slidescan" train --out "$work/phantom-only" "${slides[@]}" \
    --epochs 6 --steps 40 --val-groups "$val" \
    --name phantom-only | tee "$work/phantom-only.log"
"$bin/slidescan" train --out "$work/loso" "${slides[@]}" "${patches[@]}" \
    --loso --init "$work/phantom-only/model.safetensors" --epochs 2 \
    --steps 30 | tee "$work/loso.log"

#!/usr/bin/env bash
# Opens a generated report in headless Chromium and checks that every image
# loads (naturalWidth > 0). Skips, saying why, when Chromium is not installed
# and cannot be installed here.
#   tests/cli/test_report_images.sh [--screenshot FILE.png]   (also saves the page as rendered)
set -euo pipefail
shot=
if [ "${1:-}" = --screenshot ]; then shot=$(realpath -m "$2"); fi
cd "$(dirname "$0")/../.."
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROME" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (apt) ..."
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) || true
  CHROME=$(command -v chromium || true)
fi
if [ -z "$CHROME" ]; then
  echo "SKIP: chromium is not installed and could not be installed (apt-get install chromium)"
  exit 77
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bash tests/cli/test_report.sh --keep "$tmp" >/dev/null || { echo "FAIL: report generation"; exit 1; }
dir=$tmp/report
# The report plus a script that, once everything has loaded, writes the
# number of decoded images into the title.
sed 's#</body>#<script>window.addEventListener("load",function(){var a=Array.prototype.slice.call(document.images);document.title="loaded "+a.filter(function(i){return i.complete\&\&i.naturalWidth>0;}).length+" of "+a.length;});</script></body>#' \
  "$dir/index.html" > "$dir/check.html"
dom=$("$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$tmp/profile" --allow-file-access-from-files --virtual-time-budget=5000 \
  --dump-dom "file://$dir/check.html" 2>"$tmp/chrome.err") || { tail -5 "$tmp/chrome.err"; echo "FAIL: chromium"; exit 1; }
title=$(grep -o '<title>[^<]*</title>' <<<"$dom" | sed 's/<[^>]*>//g')
echo "chromium: $title"
n=$(grep -o '<img ' "$dir/index.html" | wc -l)
[ "$title" = "loaded $n of $n" ] && [ "$n" -gt 0 ] || { echo "FAIL: not every image loaded ($title, $n in the page)"; exit 1; }
if [ -n "$shot" ]; then
  "$CHROME" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$tmp/profile" --allow-file-access-from-files \
    --hide-scrollbars --window-size=1400,7000 --virtual-time-budget=5000 --screenshot="$shot" \
    "file://$dir/index.html" 2>>"$tmp/chrome.err" || { tail -5 "$tmp/chrome.err"; echo "FAIL: screenshot"; exit 1; }
  [ -s "$shot" ] || { echo "FAIL: no screenshot"; exit 1; }
  echo "screenshot: $shot"
fi
echo "report_images: ok"

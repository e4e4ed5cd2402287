#!/usr/bin/env bash
# The Unicode class table in q4k.h is what tools/gen_unicode.py makes from
# Debian's unicode-data (UnicodeData.txt): regenerate into a copy and compare.
cd "$(dirname "$0")/.."
ucd=/usr/share/unicode/UnicodeData.txt
if [ ! -f "$ucd" ]; then echo "skip unicode_tables_current: $ucd missing (apt-get install unicode-data)"; exit 0; fi
if out=$(python3 tools/gen_unicode.py --check 2>&1); then
    echo "ok unicode_tables_current"
else
    echo "FAIL unicode_tables_current: $out"
fi
# the check can fail: a table with one range changed is caught
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp q4k.h "$tmp/q4k.h"
python3 - "$tmp/q4k.h" <<'PY'
import re, sys
p = sys.argv[1]; s = open(p).read()
m = re.search(r'(0x[0-9A-Fa-f]+)u?,', s[s.index('gen_unicode'):])
start = s.index('gen_unicode') + m.start(1)
old = m.group(1)
s = s[:start] + hex(int(old, 16) + 1) + s[start + len(old):]
open(p, 'w').write(s)
PY
if python3 tools/gen_unicode.py --check --header "$tmp/q4k.h" >/dev/null 2>&1; then
    echo "FAIL unicode_tables_check_detects_change: a changed table passed --check"
else
    echo "ok unicode_tables_check_detects_change"
fi

// Checks gqe's tokenizer goldens against tiktoken (OpenAI's Rust core as WASM), gpt2 encoding.
const fs = require("fs");
const { get_encoding } = require("tiktoken");
const enc = get_encoding("gpt2");
const cases = JSON.parse(fs.readFileSync(process.argv[2])).cases;
let ok = 0, bad = 0, skipped = 0;
for (const c of cases) {
  if (!c.valid_utf8) { skipped++; continue; }
  const text = Buffer.from(c.hex, "hex").toString("utf8");
  const ids = Array.from(enc.encode(text, [], []));
  if (JSON.stringify(ids) === JSON.stringify(c.ids)) ok++; else { bad++; console.log("MISMATCH", c.name); }
}
const brown = fs.readFileSync(process.argv[3], "utf8");
const ids = enc.encode(brown, [], []);
let h = 0xcbf29ce484222325n; const P = 0x100000001b3n, M = (1n << 64n) - 1n;
for (const id of ids) for (let k = 0; k < 4; k++) { h = ((h ^ BigInt((id >>> (8 * k)) & 255)) * P) & M; }
const want = JSON.parse(fs.readFileSync(process.argv[4]));
console.log(`cases: ${ok} equal, ${bad} differ, ${skipped} invalid-UTF-8 skipped; brown: ${ids.length} tokens fnv1a64 ${h.toString(16).padStart(16, "0")} (golden ${want.tokens ?? want.count} ${want.fnv1a64})`);

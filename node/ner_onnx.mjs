// Tag text with an exported bert-crf folder from Node.js: onnxruntime-node runs the graph (encoder, classifier and
// the CRF's constrained Viterbi pass with marginals), @huggingface/tokenizers reads the folder's tokenizer.json.
//
//   npm install                      # in the export folder: onnxruntime-node and @huggingface/tokenizers
//   node ner_onnx.mjs . "梁一鸣在济民中医院工作。"   # prints entities as JSON
//   node ner_onnx.mjs . --jsonl < texts.txt          # one JSON list of entities per input line
//
//   import { OnnxNerTagger } from "./ner_onnx.mjs";
//   const tagger = await OnnxNerTagger.create(".");   // { quantized: true } for model.int8.onnx
//   await tagger.tag(["...", "..."]);                   // [[{ entity_group, score, word, start, end }, ...], ...]
//
// Same words and entities as the Python runtime (ner_onnx.py) for texts that fit one window (crf.json's max_length
// sub-tokens with the special tokens). A longer text is cut into consecutive windows at word boundaries, each
// decoded alone: an entity across a cut can differ from Python's, which stitches overlapping windows into one
// Viterbi pass. Offsets are JavaScript string indices (UTF-16 code units: text.slice(start, end) === word); they
// equal Python's character offsets unless the text holds characters beyond U+FFFF. Lexicon models and user
// dictionaries are Python-only (ner_onnx.py, the pipeline).

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { Tokenizer } from "@huggingface/tokenizers";

export class OnnxNerTagger {
  static async create(folder, { quantized = false, threads = 0 } = {}) {
    const read = (name) => {
      const file = path.join(folder, name);
      if (!fs.existsSync(file)) throw new Error(`${file} not found: export the model with export_onnx.py first`);
      return JSON.parse(fs.readFileSync(file, "utf8"));
    };
    const meta = read("crf.json");
    if (meta.lexicon_types) {
      throw new Error("this is a lexicon model: its lexicon features are computed by ner_onnx.py (Python) only");
    }
    const tokenizerJson = read("tokenizer.json");
    const configFile = path.join(folder, "tokenizer_config.json");
    const config = fs.existsSync(configFile) ? JSON.parse(fs.readFileSync(configFile, "utf8")) : {};
    const modelFile = path.join(folder, quantized ? "model.int8.onnx" : "model.onnx");
    if (!fs.existsSync(modelFile)) throw new Error(`${modelFile} not found (export with --int8 for the quantized model)`);
    const options = threads ? { intraOpNumThreads: threads } : {};
    const session = await ort.InferenceSession.create(modelFile, options);
    if (!session.inputNames.includes("word_starts")) {
      throw new Error(`${modelFile} has no CRF decoding (exported with --emissions_only): export it again without`);
    }
    return new OnnxNerTagger(meta, new Tokenizer(tokenizerJson, config), tokenizerJson, session);
  }

  constructor(meta, tokenizer, tokenizerJson, session) {
    this.meta = meta;
    this.tokenizer = tokenizer;
    this.session = session;
    this.labels = meta.labels;
    this.budget = Math.max(1, meta.max_length - meta.special_head.length - meta.special_tail.length);
    // Words as the Python runtime makes them: its own split of raw text (SentencePiece tokenizers), or BERT's.
    const pre = tokenizerJson.pre_tokenizer;
    if (meta.word_split === "text") this.split = splitText;
    else if (pre && pre.type === "BertPreTokenizer") this.split = bertWords;
    else throw new Error(`no word splitting for a ${pre ? pre.type : "missing"} pre-tokenizer here; use ner_onnx.py`);
    this.unkId = tokenizer.token_to_id(meta.unk_token);
    const bare = tokenizer.token_to_id("\u2581");
    this.bareId = bare === undefined || bare === this.unkId ? null : bare;
    this.known = new Map(); // word -> its sub-token ids
  }

  async tag(texts, { batchSize = 32 } = {}) {
    const single = typeof texts === "string";
    const items = (single ? [texts] : texts).map((text) => this.prepare(text));
    const windows = items.flatMap((item, i) => item.windows.map((w) => ({ item: i, ...w })));
    for (let begin = 0; begin < windows.length; begin += batchSize) {
      const chunk = windows.slice(begin, begin + batchSize);
      const { tags, scores, words } = await this.run(chunk);
      chunk.forEach((w, row) => {
        for (let k = 0; k < w.chain.length; k++) {
          items[w.item].tags[w.start + k] = Number(tags[row * words + k]);
          items[w.item].scores[w.start + k] = scores[row * words + k];
        }
      });
    }
    const results = items.map((item) => this.entities(item));
    return single ? results[0] : results;
  }

  prepare(text) {
    if (typeof text !== "string") throw new Error(`expected a string, got ${typeof text}`);
    const spans = [];
    const pieces = [];
    for (const [start, end] of this.split(text)) {
      let ids = this.wordIds(text.slice(start, end));
      if (ids.length === 0) continue; // no tokens: no word, as in the Python runtime
      if (this.bareId !== null && ids.length > 1 && ids[0] === this.bareId) ids = ids.slice(1);
      spans.push([start, end]);
      pieces.push(ids.slice(0, this.budget));
    }
    const windows = [];
    for (let start = 0; start < pieces.length; ) {
      let end = start;
      let used = 0;
      while (end < pieces.length && (used + pieces[end].length <= this.budget || end === start)) used += pieces[end++].length;
      const ids = [...this.meta.special_head];
      const chain = [];
      for (const piece of pieces.slice(start, end)) {
        chain.push(ids.length);
        ids.push(...piece);
      }
      windows.push({ start, ids: [...ids, ...this.meta.special_tail], chain });
      start = end;
    }
    return { text, spans, windows, tags: new Array(spans.length), scores: new Array(spans.length) };
  }

  wordIds(word) {
    let ids = this.known.get(word);
    if (ids === undefined) {
      ids = this.tokenizer.encode(word, { add_special_tokens: false }).ids;
      // A word the tokenizer drops whole (control characters) keeps a position as the unknown token in Python's
      // SentencePiece path; BERT's path drops it (no word id), as here.
      if (ids.length === 0 && this.split === splitText) ids = [this.unkId];
      if (this.known.size > 100000) this.known.clear();
      this.known.set(word, ids);
    }
    return ids;
  }

  async run(chunk) {
    const batch = chunk.length;
    const seq = Math.max(...chunk.map((w) => w.ids.length));
    const words = Math.max(...chunk.map((w) => w.chain.length));
    const ids = new BigInt64Array(batch * seq).fill(BigInt(this.meta.pad_id));
    const mask = new BigInt64Array(batch * seq);
    const starts = new BigInt64Array(batch * words).fill(-1n);
    chunk.forEach((w, row) => {
      w.ids.forEach((id, k) => {
        ids[row * seq + k] = BigInt(id);
        mask[row * seq + k] = 1n;
      });
      w.chain.forEach((position, k) => (starts[row * words + k] = BigInt(position)));
    });
    const feeds = {
      input_ids: new ort.Tensor("int64", ids, [batch, seq]),
      attention_mask: new ort.Tensor("int64", mask, [batch, seq]),
      word_starts: new ort.Tensor("int64", starts, [batch, words]),
    };
    const out = await this.session.run(feeds, ["tags", "scores"]);
    return { tags: out.tags.data, scores: out.scores.data, words };
  }

  entities(item) {
    const found = [];
    for (const [type, first, last] of tagsToSpans(item.tags.map((t) => this.labels[t]), this.meta.tag_scheme)) {
      const start = item.spans[first][0];
      const end = item.spans[last - 1][1];
      let sum = 0;
      for (let k = first; k < last; k++) sum += item.scores[k];
      found.push({ entity_group: type, score: sum / (last - first), word: item.text.slice(start, end), start, end });
    }
    return found;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Words: [start, end) spans in UTF-16 indices

// CJK ideographs as ner_windows.is_cjk (and split_text) decide, and as BERT's normalizer does.
const PY_CJK = [[0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df], [0x2a700, 0x2ceaf], [0xf900, 0xfaff], [0x2f800, 0x2fa1f]];
const BERT_CJK = [...PY_CJK.filter(([low]) => low !== 0x2a700), [0x2a700, 0x2b81f], [0x2b920, 0x2ceaf]];
const within = (ranges, cp) => ranges.some(([low, high]) => cp >= low && cp <= high);
// Python's str.isspace and str.isalnum, and Unicode marks.
const PY_SPACE = /^[\t\n\v\f\r\x1c-\x1f\x85\p{Zs}\u2028\u2029]$/u;
const ALNUM = /^[\p{L}\p{N}]$/u;
const MARK = /^\p{M}$/u;

// ner_onnx.py's split_text: each CJK ideograph and each punctuation or symbol alone, runs of other characters.
export function splitText(text) {
  const spans = [];
  let start = null;
  let i = 0;
  for (const ch of text) {
    const alone = within(PY_CJK, ch.codePointAt(0)) || !(ALNUM.test(ch) || PY_SPACE.test(ch) || MARK.test(ch));
    if (PY_SPACE.test(ch) || alone) {
      if (start !== null) spans.push([start, i]);
      start = null;
      if (alone) spans.push([i, i + ch.length]);
    } else if (start === null) start = i;
    i += ch.length;
  }
  if (start !== null) spans.push([start, text.length]);
  return spans;
}

// BERT's normalizer and pre-tokenizer as word boundaries: control characters vanish, whitespace separates, CJK
// ideographs and punctuation (ASCII or Unicode P*) stand alone.
const BERT_SPACE = /^[\t\n\r\p{White_Space}]$/u;
const BERT_DROPPED = /^[\0\ufffd\p{Cc}\p{Cf}\p{Cn}\p{Co}\p{Cs}]$/u;
const BERT_PUNCT = /^[!-/:-@[-`{-~\p{P}]$/u;

export function bertWords(text) {
  const spans = [];
  let start = null;
  let end = null; // the end of the current word's last kept character
  let i = 0;
  const close = () => {
    if (start !== null) spans.push([start, end]);
    start = null;
  };
  for (const ch of text) {
    const here = i;
    i += ch.length;
    if (ch !== "\t" && ch !== "\n" && ch !== "\r" && BERT_DROPPED.test(ch)) continue;
    if (BERT_SPACE.test(ch)) close();
    else if (within(BERT_CJK, ch.codePointAt(0)) || BERT_PUNCT.test(ch)) {
      close();
      spans.push([here, i]);
    } else {
      if (start === null) start = here;
      end = i;
    }
  }
  close();
  return spans;
}

// ---------------------------------------------------------------------------------------------------------------
// Entities of word tags, read leniently as ner_tags.tags_to_spans does

function splitTag(label) {
  if (label === "O") return ["O", ""];
  for (const sep of ["-", "_"]) {
    const at = label.indexOf(sep);
    if (at === 1 && label.length > 2) return [label[0].toUpperCase(), label.slice(2)];
  }
  return null;
}

export function tagsToSpans(tags, scheme) {
  const spans = [];
  if (scheme === "none") {
    tags.forEach((tag, i) => {
      if (tag !== "O" && (i === 0 || tags[i - 1] !== tag)) spans.push([tag, i, i + 1]);
      else if (tag !== "O") spans[spans.length - 1][2] = i + 1;
    });
    return spans;
  }
  let current = null;
  const close = (end) => {
    if (current !== null) spans.push([current[0], current[1], end]);
    current = null;
  };
  tags.forEach((tag, i) => {
    const parts = splitTag(tag);
    if (parts === null || parts[0] === "O") return close(i);
    const [prefix, type] = parts;
    const same = current !== null && current[0] === type;
    if (scheme === "BIO" || scheme === "IOB1") {
      if (prefix === "B" || !same) {
        close(i);
        current = [type, i];
      }
    } else {
      if (prefix === "B" || prefix === "S" || !same) {
        close(i);
        current = [type, i];
      }
      if (prefix === "E" || prefix === "S") close(i + 1);
    }
  });
  close(tags.length);
  return spans;
}

// ---------------------------------------------------------------------------------------------------------------

async function main(argv) {
  const args = argv.filter((a) => !a.startsWith("--"));
  const flags = new Set(argv.filter((a) => a.startsWith("--")));
  if (args.length < 1) {
    console.error("usage: node ner_onnx.mjs FOLDER [TEXT] [--int8] [--jsonl < texts.txt]");
    process.exit(2);
  }
  const tagger = await OnnxNerTagger.create(args[0], { quantized: flags.has("--int8") });
  if (flags.has("--jsonl")) {
    const lines = fs.readFileSync(0, "utf8").split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    for (const entities of await tagger.tag(lines)) process.stdout.write(JSON.stringify(entities) + "\n");
  } else {
    console.log(JSON.stringify(await tagger.tag(args[1] ?? "梁一鸣在济民中医院工作。"), null, 1));
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(`error: ${error.message}`);
    process.exit(1);
  });
}

// tests/tokenizer/synthetic.js - small tokenizer.json files, one per
// component or flag we support, with the Hugging Face tokenizers library's
// own ids and decodings for a few texts each.
//
//   node tests/tokenizer/synthetic.js NODE_MODULES > tests/fixtures/tokenizers/synthetic.jsonl
//
// NODE_MODULES holds tokenizers@0.23.2 (tests/tokenizer/npm-setup.sh prints
// it).  Each output line: {"name", "tokenizer": <tokenizer.json object>,
// "cases": [{"text", "ids", "ids_plain", "decoded", "decoded_skip"}]}.
// tests/test_tokenizer.c demands the same from core/tokenizer.c.
'use strict';
const path = require('path');
const { Tokenizer } = require(path.resolve(process.argv[2] || 'build/npm/node_modules', 'tokenizers'));

// A vocab of single characters, <0xXX> byte tokens, specials and merges.
function spVocab(extra) {
  const vocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  let id = 3;
  for (let b = 0; b < 256; b++)
    vocab['<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>'] = id++;
  for (const c of '▁abcdehlorwxy123 ,!é')
    if (!(c in vocab)) vocab[c] = id++;
  for (const t of extra) if (!(t in vocab)) vocab[t] = id++;
  return vocab;
}

function mergesFor(vocab, merges) {
  for (const m of merges) {
    const [a, b] = m.split(' ');
    if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
  }
  return merges;
}

function bpe(opts) {
  const vocab = spVocab(opts.extraVocab || []);
  const merges = mergesFor(vocab, opts.merges || ['▁ h', 'h e', 'l l', 'll o', '▁h e', 'he llo', '▁he llo', 'w o', 'r l', 'wo rl']);
  return Object.assign({
    type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
    end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
    vocab, merges,
  }, opts.model || {});
}

function tok(parts) {
  return Object.assign({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [
      { id: 0, content: '<unk>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 1, content: '<s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 2, content: '</s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null,
  }, parts, { model: parts.model || bpe({}) });
}

const spNorm = { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] };
const spDec = { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] };
const bosTemplate = { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }], special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } } };
const spTexts = ['hello world', 'héllo wörld ☃', '<s>hello</s> world', '', ' ', '  hello  ', 'héé llo', 'x\ty\nz'];

function added(id, content, flags) {
  return Object.assign({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false }, flags);
}

function splitCase(behavior, invert) {
  return {
    name: `split-${behavior}${invert ? '-inverted' : ''}`,
    tokenizer: tok({ pre_tokenizer: { type: 'Split', pattern: { Regex: '[0-9]+' }, behavior, invert } }),
    texts: ['ab12cd345ef', '12ab', 'ab12', '1', ''],
  };
}

const cases = [
  { name: 'sp-byte-fallback', texts: spTexts,
    tokenizer: tok({ normalizer: spNorm, post_processor: bosTemplate, decoder: spDec,
      model: bpe({ model: { unk_token: '<unk>', byte_fallback: true, fuse_unk: true } }) }) },
  { name: 'sp-unk-fused', texts: spTexts,
    tokenizer: tok({ normalizer: spNorm, decoder: spDec, model: bpe({ model: { unk_token: '<unk>', fuse_unk: true } }) }) },
  { name: 'sp-unk-not-fused', texts: spTexts,
    tokenizer: tok({ normalizer: spNorm, decoder: spDec, model: bpe({ model: { unk_token: '<unk>', fuse_unk: false } }) }) },
  { name: 'sp-no-unk', texts: spTexts, tokenizer: tok({ normalizer: spNorm, model: bpe({}) }) },
  { name: 'sp-merge-across-metaspace', texts: ['hello world', 'lo wo lo', 'o o  o'],
    tokenizer: tok({ normalizer: spNorm, model: bpe({ merges: ['l o', 'lo ▁', 'lo▁ w', 'o ▁', '▁ o'] }) }) },
  { name: 'metaspace-always', texts: ['hello world', 'a <s> b', ' hello', '▁x'],
    tokenizer: tok({ pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
      decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true } }) },
  { name: 'metaspace-first', texts: ['hello world', 'a <s> b', '<s>hello', ' hello'],
    tokenizer: tok({ pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
      decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true } }) },
  { name: 'metaspace-first-after-prepend', texts: ['12', '12 ab 34', '<s>12', ' 12', '\t12', 'a12'],
    tokenizer: tok({ normalizer: { type: 'Prepend', prepend: '▁' },
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: false }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true }] } }) },
  { name: 'metaspace-first-after-strip', texts: ['  hello world', 'ﬁ x', '\u00a0 12', 'x'],
    tokenizer: tok({ normalizer: { type: 'Sequence', normalizers: [{ type: 'Strip', strip_left: true, strip_right: true }, { type: 'NFKC' }] },
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true }] } }) },
  { name: 'metaspace-first-decomposed', texts: ['\u00e9a b', 'e\u0301a', '\u0130x', 'a\u0301'],
    tokenizer: tok({ normalizer: { type: 'Sequence', normalizers: [{ type: 'NFD' }, { type: 'Lowercase' }] },
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '\\p{M}' }, behavior: 'Isolated', invert: false }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true }] } }) },
  { name: 'metaspace-first-after-replace', texts: ['abc', 'cab', 'ab ab'],
    tokenizer: tok({ normalizer: { type: 'Replace', pattern: { String: 'ab' }, content: '▁x▁' },
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { String: 'x' }, behavior: 'Isolated', invert: false }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false }] } }) },
  { name: 'metaspace-never-nosplit', texts: ['hello world', 'a <s> b'],
    tokenizer: tok({ pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never', split: false },
      decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never', split: false } }) },
  { name: 'added-flags', texts: ['x <m> y', 'x<m>y', 'x <r>   y', 'ab abc xab ab_ ab', 'ab', 'say HELLO now', 'say hello', '<m><r>  <m>'],
    tokenizer: tok({ normalizer: { type: 'Lowercase' },
      added_tokens: [added(0, '<unk>', { special: true }), added(1, '<s>', { special: true }), added(2, '</s>', { special: true }),
        added(400, '<m>', { lstrip: true, special: true }), added(401, '<r>', { rstrip: true }),
        added(402, 'ab', { single_word: true }), added(403, 'HELLO', { normalized: true })] }) },
  splitCase('Removed', false), splitCase('Isolated', false), splitCase('MergedWithPrevious', false),
  splitCase('MergedWithNext', false), splitCase('Contiguous', false), splitCase('Removed', true),
  splitCase('MergedWithNext', true),
  { name: 'split-string', texts: ['a--b----c', '--', 'abc'],
    tokenizer: tok({ pre_tokenizer: { type: 'Split', pattern: { String: '--' }, behavior: 'Isolated', invert: false } }) },
  { name: 'digits', texts: ['ab 12345 c6', '007', 'x'],
    tokenizer: tok({ pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }] } }) },
  { name: 'digits-contiguous', texts: ['ab 12345 c6', '007'],
    tokenizer: tok({ pre_tokenizer: { type: 'Digits', individual_digits: false } }) },
  { name: 'whitespace', texts: ['hello, world! 123 ab_cd', '  x  ', 'é́ ab'],
    tokenizer: tok({ pre_tokenizer: { type: 'Whitespace' } }) },
  { name: 'whitespace-split', texts: ['hello, world!\t123\u00a0ab', '  x  '],
    tokenizer: tok({ pre_tokenizer: { type: 'WhitespaceSplit' } }) },
  { name: 'normalizers', texts: ['İSTANBUL ÀB', '  ﬁ ①  ', 'e\u0301 é', 'ǅ ß ẞ', ''],
    tokenizer: tok({ normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKD' }, { type: 'StripAccents' }, { type: 'Lowercase' }, { type: 'Strip', strip_left: true, strip_right: true }, { type: 'NFKC' }] } }) },
  { name: 'nfc-strip-right', texts: ['e\u0301 é  ', '  a  '],
    tokenizer: tok({ normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Strip', strip_left: false, strip_right: true }] } }) },
  { name: 'nfd-replace-regex', texts: ['é a  b   c', 'hello'],
    tokenizer: tok({ normalizer: { type: 'Sequence', normalizers: [{ type: 'NFD' }, { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }] } }) },
  { name: 'roberta', texts: ['hello', ''],
    tokenizer: tok({ post_processor: { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 1], trim_offsets: true, add_prefix_space: true } }) },
  { name: 'bert', texts: ['hello'],
    tokenizer: tok({ post_processor: { type: 'BertProcessing', sep: ['</s>', 2], cls: ['<s>', 1] } }) },
  { name: 'post-sequence', texts: ['hello'],
    tokenizer: tok({ post_processor: { type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: 'END', type_id: 0 } }],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }], special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] }, END: { id: 'END', ids: [2, 0], tokens: ['</s>', '<unk>'] } } }] } }) },
  { name: 'merge-priority', texts: ['abc', 'abcabc', 'aabbcc'],
    tokenizer: tok({ model: bpe({ merges: ['b c', 'a b', 'ab c', 'a bc'] }) }) },
  { name: 'merge-duplicate', texts: ['abc', 'ababc'],
    tokenizer: tok({ model: bpe({ merges: ['a b', 'b c', 'a b'] }) }) },
  { name: 'ignore-merges', texts: ['abcd', 'abc'],
    tokenizer: tok({ model: bpe({ extraVocab: ['abcd'], merges: ['a b', 'c d'], model: { ignore_merges: true } }) }) },
  { name: 'subword-affixes', texts: ['abc', 'ab', 'a'],
    tokenizer: tok({ model: (() => {
      const vocab = { a: 0, '##b': 1, '##c': 2, 'b</w>': 3, '##c</w>': 4, '##b</w>': 5, 'a</w>': 6, 'ab': 7, 'ab</w>': 8, 'abc</w>': 9, '<s>': 10, '</s>': 11, '<unk>': 12 };
      return { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: '##', end_of_word_suffix: '</w>',
        fuse_unk: false, byte_fallback: false, vocab, merges: ['a ##b', 'a ##b</w>', 'ab ##c</w>'] };
    })(), added_tokens: [] }) },
  { name: 'bytelevel-prefix-space', texts: ['hello <s>world', 'hello', ' hi'],
    tokenizer: tok({ pre_tokenizer: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: bpe({ extraVocab: ['Ġ', 'Ġh', 'Ċ', 'ĉ'], merges: ['Ġ h', 'h e', 'l l'] }) }) },
  { name: 'bytelevel-noregex', texts: ['hello world', 'a\nb'],
    tokenizer: tok({ pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: bpe({ extraVocab: ['Ġ', 'Ċ'], merges: ['h e', 'l l'] }) }) },
  { name: 'decoders', texts: ['héllo ☃', 'x'],
    tokenizer: tok({ normalizer: spNorm, model: bpe({ model: { byte_fallback: true } }),
      decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Strip', content: '▁', start: 2, stop: 0 }, { type: 'Replace', pattern: { Regex: 'l+' }, content: 'L' }, { type: 'Fuse' }] } }) },
  { name: 'no-decoder', texts: ['hello world'], tokenizer: tok({ normalizer: spNorm }) },
];

(async () => {
  for (const c of cases) {
    const json = JSON.stringify(c.tokenizer);
    const t = Tokenizer.fromString(json);
    const out = { name: c.name, tokenizer: c.tokenizer, cases: [] };
    for (const text of c.texts) {
      const ids = (await t.encode(text, null, { addSpecialTokens: true })).getIds();
      const plain = (await t.encode(text, null, { addSpecialTokens: false })).getIds();
      out.cases.push({ text, ids, ids_plain: plain, decoded: await t.decode(ids, false), decoded_skip: await t.decode(ids, true) });
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  }
})().catch((err) => { console.error(err); process.exit(1); });

// Tokenizes every .net file under the given folders with the TextMate grammar (vscode-textmate and
// vscode-oniguruma, as VS Code does) and fails on any non-blank character that gets no scope of
// its own (only the root scope source.netdsl). Prints one line per file; exit code 1 on a gap.
const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const here = __dirname;
const wasm = fs.readFileSync(path.join(path.dirname(require.resolve("vscode-oniguruma")), "onig.wasm")).buffer;
const onigLib = oniguruma.loadWASM(wasm).then(() => ({
  createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
  createOnigString: (s) => new oniguruma.OnigString(s),
}));
const registry = new vsctm.Registry({
  onigLib,
  loadGrammar: async (scopeName) => {
    if (scopeName !== "source.netdsl") return null;
    const file = path.join(here, "..", "syntaxes", "netdsl.tmLanguage.json");
    return vsctm.parseRawGrammar(fs.readFileSync(file, "utf8"), file);
  },
});

function specs(folder) {
  const out = [];
  for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
    const full = path.join(folder, entry.name);
    if (entry.isDirectory() && !entry.name.startsWith(".") && entry.name !== "node_modules") out.push(...specs(full));
    else if (entry.isFile() && entry.name.endsWith(".net")) out.push(full);
  }
  return out.sort();
}

async function main() {
  const grammar = await registry.loadGrammar("source.netdsl");
  const folders = process.argv.slice(2);
  let gaps = 0;
  let files = 0;
  for (const file of folders.flatMap(specs)) {
    files += 1;
    let state = vsctm.INITIAL;
    const lines = fs.readFileSync(file, "utf8").split("\n");
    lines.forEach((line, i) => {
      const result = grammar.tokenizeLine(line, state);
      for (const token of result.tokens) {
        const text = line.slice(token.startIndex, token.endIndex);
        if (token.scopes.length < 2 && text.trim() !== "") {
          gaps += 1;
          console.log(`${file}:${i + 1}:${token.startIndex + 1}: no scope for ${JSON.stringify(text)}`);
        }
      }
      state = result.ruleStack;
    });
  }
  console.log(`${files} files tokenized, ${gaps} untokenized spans`);
  process.exit(gaps || files === 0 ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});

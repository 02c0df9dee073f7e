// The netdsl extension: starts `netdsl lsp` (the command is the setting netdsl.server.command) and
// connects it to .net files; highlighting before the server answers comes from the TextMate grammar.
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("netdsl");
  const [command, ...args] = config.get("server.command", ["netdsl", "lsp"]);
  const serverOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [{ language: "netdsl" }],
    initializationOptions: { inlayHints: config.get("inlayHints", true) },
    synchronize: { configurationSection: "netdsl" },
  };
  client = new LanguageClient("netdsl", "netdsl language server", serverOptions, clientOptions);
  client.start();
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };

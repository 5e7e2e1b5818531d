// One OutputChannel for everything worth telling a curious user (malformed payloads,
// dropped entries). Never a popup: outputs come from files anyone can send.
import * as vscode from 'vscode';

let channel: vscode.LogOutputChannel | undefined;

export function log(): vscode.LogOutputChannel {
  channel ??= vscode.window.createOutputChannel('gradwatch', { log: true });
  return channel;
}

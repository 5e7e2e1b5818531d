// Reads gradwatch payloads out of a cell's outputs. Parsing is cached per output item
// (the bytes object is stable until the output changes), so re-mapping on every
// keystroke costs no JSON parsing, and each malformed payload is logged once.
import * as vscode from 'vscode';
import { LIMITS, MIME_TYPE, Payload, validatePayload } from '../core/payload';
import { log } from './log';

const MAX_PAYLOAD_BYTES = LIMITS.maxPayloadBytes;

const cache = new WeakMap<Uint8Array, Payload | null>();
const decoder = new TextDecoder('utf-8', { fatal: false });

function parse(data: Uint8Array, where: string): Payload | null {
  if (data.byteLength > MAX_PAYLOAD_BYTES) {
    log().warn(`${where}: payload of ${data.byteLength} bytes ignored (limit ${MAX_PAYLOAD_BYTES})`);
    return null;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(data));
  } catch {
    log().warn(`${where}: payload is not JSON; ignored`);
    return null;
  }
  const result = validatePayload(raw);
  if (!result.ok) {
    log().warn(`${where}: payload ignored: ${result.error}`);
    return null;
  }
  for (const w of result.warnings) log().warn(`${where}: ${w}`);
  return result.payload;
}

export function cellPayloads(cell: vscode.NotebookCell): Payload[] {
  const payloads: Payload[] = [];
  for (const output of cell.outputs) {
    for (const item of output.items) {
      if (item.mime !== MIME_TYPE) continue;
      let payload = cache.get(item.data);
      if (payload === undefined) {
        payload = parse(item.data, `${cell.notebook.uri.toString()} cell ${cell.index + 1}`);
        cache.set(item.data, payload);
      }
      if (payload) payloads.push(payload);
    }
  }
  return payloads;
}

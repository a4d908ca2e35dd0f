// When to retry, in a gRPC status's details: a google.rpc.RetryInfo packed in the
// google.rpc.Status of the grpc-status-details-bin trailer, as gRPC's richer error model
// has it (what grpc clients and grpcurl understand). Written by the controller's rate
// limits, read by the clients that back off (the example optimizer).
import * as grpc from '@grpc/grpc-js';
import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';

export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
const RETRY_INFO_TYPE = 'type.googleapis.com/google.rpc.RetryInfo';

/** google.rpc.Status { code, message, details: [Any(RetryInfo { retry_delay })] }, encoded. */
export function encodeRetryStatus(code: grpc.status, message: string, delayMs: number): Uint8Array {
  const ms = Math.max(0, Math.ceil(delayMs));
  const duration = new BinaryWriter();
  if (ms >= 1000) duration.uint32(8).int64(Math.floor(ms / 1000));
  if (ms % 1000 > 0) duration.uint32(16).int32((ms % 1000) * 1_000_000);
  const retryInfo = new BinaryWriter().uint32(10).bytes(duration.finish()).finish();
  const any = new BinaryWriter().uint32(10).string(RETRY_INFO_TYPE).uint32(18).bytes(retryInfo).finish();
  return new BinaryWriter().uint32(8).int32(code).uint32(18).string(message).uint32(26).bytes(any).finish();
}

/** Trailers carrying a RetryInfo of `delayMs`. */
export function retryMetadata(code: grpc.status, message: string, delayMs: number): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(STATUS_DETAILS_KEY, Buffer.from(encodeRetryStatus(code, message, delayMs)));
  return md;
}

function fields(bytes: Uint8Array, onField: (no: number, r: BinaryReader, wire: number) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (!onField(tag >>> 3, r, tag & 7)) r.skip(tag & 7);
  }
}

/** The retry delay a status's details name, ms; undefined when they name none (or do not parse). */
export function retryDelayMs(metadata: grpc.Metadata | undefined): number | undefined {
  const raw = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (!(raw instanceof Uint8Array)) return undefined;
  let delay: number | undefined;
  try {
    fields(raw, (no, r) => {
      if (no !== 3) return false;
      let type = '';
      let value: Uint8Array | undefined;
      fields(r.bytes(), (n, a) => {
        if (n === 1) type = a.string();
        else if (n === 2) value = a.bytes();
        else return false;
        return true;
      });
      if (type !== RETRY_INFO_TYPE || !value) return true;
      fields(value, (n, a) => {
        if (n !== 1) return false;
        let s = 0;
        let ns = 0;
        fields(a.bytes(), (d, b) => {
          if (d === 1) s = Number(b.int64());
          else if (d === 2) ns = b.int32();
          else return false;
          return true;
        });
        delay = s * 1000 + ns / 1e6;
        return true;
      });
      return true;
    });
  } catch {
    return undefined;
  }
  return delay;
}

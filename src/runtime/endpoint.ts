/**
 * A typed comlink endpoint over a node:worker_threads MessagePort (comlink's bundled Node
 * adapter has broken types under NodeNext).
 */
import type { MessagePort } from 'node:worker_threads';
import type { Endpoint } from 'comlink';

type Listener = (ev: { data: unknown }) => void;

/** Wrap a MessagePort as a comlink Endpoint. */
export function portEndpoint(port: MessagePort): Endpoint {
  const map = new Map<Listener, (data: unknown) => void>();
  const ep = {
    postMessage(message: unknown, transfer?: unknown[]) {
      port.postMessage(message, transfer as never);
    },
    addEventListener(_type: string, listener: Listener) {
      const h = (data: unknown) => listener({ data });
      map.set(listener, h);
      port.on('message', h);
    },
    removeEventListener(_type: string, listener: Listener) {
      const h = map.get(listener);
      if (h) port.off('message', h);
      map.delete(listener);
    },
    start() {
      port.start();
    },
  };
  return ep as unknown as Endpoint;
}

// Drives tests/signalr/contract/shapes_hub.py's hub through its generated contract (shapes_contract.ts,
// written beside this file by tests/signalr/contract/test_node.py) with the official client,
// and prints what came back as JSON for the Python test to check.
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";
import { type Color, type ShapeInfo, getShapesServer, registerShapesClient } from "./shapes_contract";

async function main(url: string, protocol: string): Promise<void> {
    const builder = new signalR.HubConnectionBuilder()
        .withUrl(url, { transport: signalR.HttpTransportType.WebSockets })
        .configureLogging(signalR.LogLevel.Warning);
    if (protocol === "messagepack") {
        builder.withHubProtocol(new MessagePackHubProtocol());
    }
    const connection = builder.build();
    const seen: ShapeInfo[] = [];
    const counts: number[] = [];
    const offered: Color[][] = [];
    const remove = registerShapesClient(connection, {
        shapeAdded: (shape) => {
            seen.push(shape);
        },
        pickColor: async (choices) => {
            offered.push(choices);
            return choices[choices.length - 1];
        },
        renamedOnClient: (count) => {
            counts.push(count);
        },
    });
    await connection.start();
    const hub = getShapesServer(connection);
    const results: Record<string, unknown> = {};
    results.added = await hub.addShape("tri", [{ x: 0, y: 0 }, { x: 1, y: 0.5, label: "top" }]);
    results.addedLine = await hub.addShape("line", [{ x: 2, y: 3 }], "line");
    results.all = await hub.allShapes();
    results.items = await new Promise<number[]>((resolve, reject) => {
        const items: number[] = [];
        hub.countTo(3).subscribe({ next: (item) => items.push(item), complete: () => resolve(items), error: reject });
    });
    const numbers = new signalR.Subject<number>();
    const total = hub.total(numbers);
    numbers.next(1.5);
    numbers.next(2);
    numbers.complete();
    results.total = await total;
    const stamp = await hub.stamp(protocol === "messagepack" ? new Uint8Array([1, 2, 3]) : "AQID", new Date(Date.UTC(2026, 0, 31, 12)));
    results.stamp = {
        data: stamp.data instanceof Uint8Array ? Array.from(stamp.data) : stamp.data,
        when: stamp.when instanceof Date ? stamp.when.toISOString() : stamp.when,
        sizes: stamp.sizes,
    };
    results.html = await hub.getHTML();
    results.htmlTitled = await hub.getHTML("hi");
    results.choice = await hub.choose();
    results.seen = seen;
    results.counts = counts;
    results.offered = offered;
    remove();
    try {
        await hub.choose();
        results.afterRemove = "answered";
    } catch (error) {
        results.afterRemove = (error as Error).message;
    }
    await connection.stop();
    console.log(JSON.stringify(results));
}

main(process.argv[2], process.argv[3] ?? "json").catch((error: unknown) => {
    console.error(error);
    process.exit(1);
});

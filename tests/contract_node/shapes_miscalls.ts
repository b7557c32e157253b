// Calls through the generated contract that must NOT compile: each line marked `// error`
// is a mistake tsc --strict has to report (tests/signalr/contract/test_node.py checks the lines).
import type { HubConnection } from "@microsoft/signalr";
import { getShapesServer, registerShapesClient } from "./shapes_contract";

export async function mistakes(connection: HubConnection): Promise<void> {
    const hub = getShapesServer(connection);
    await hub.addShape("tri", [{ x: "0", y: 0 }]); // error
    await hub.addShape(1, []); // error
    await hub.addShape("tri", [], "circle"); // error
    await hub.addShapes("tri", []); // error
    const count: string = await hub.addShape("tri", []); // error
    hub.countTo("3"); // error
    registerShapesClient(connection, { shapeAdded: () => {}, renamedOnClient: () => {} }); // error
    registerShapesClient(connection, { shapeAdded: () => {}, pickColor: () => "green", renamedOnClient: () => {} }); // error
    void count;
}

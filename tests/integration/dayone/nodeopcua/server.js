// A carrier server as a vendor might ship it, written with node-opcua (not asyncua).
// Loopback only. Usage: node server.js PORT PKI_DIR SECURITY USER:PASSWORD
//   SECURITY: "secure" (Basic256Sha256 SignAndEncrypt only, username only) or "none".
// Unknown client certificates are rejected (kept in PKI_DIR/rejected); trusted ones are
// the files in PKI_DIR/trusted/certs, read when a client connects.
// Prints "READY <endpoint>" once it listens. Values change every 100 ms.
"use strict";
const { OPCUAServer } = require("node-opcua-server");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { SecurityPolicy, MessageSecurityMode } = require("node-opcua-secure-channel");
const { DataType } = require("node-opcua-variant");
const { standardUnits } = require("node-opcua-data-access");

const [port, pkiDir, security, user] = process.argv.slice(2);
const [userName, userPassword] = (user || "gateway:change-me").split(":");
const secure = security === "secure";

async function main() {
  const serverCertificateManager = new OPCUACertificateManager({
    automaticallyAcceptUnknownCertificate: false, rootFolder: pkiDir,
  });
  await serverCertificateManager.initialize();
  const server = new OPCUAServer({
    port: Number(port),
    hostname: "127.0.0.1",
    alternateHostname: ["127.0.0.1"],
    resourcePath: "/vendor/carriers",
    serverCertificateManager,
    securityPolicies: secure ? [SecurityPolicy.Basic256Sha256] : [SecurityPolicy.None],
    securityModes: secure ? [MessageSecurityMode.SignAndEncrypt] : [MessageSecurityMode.None],
    allowAnonymous: !secure,
    userManager: {
      isValidUser: (name, password) => name === userName && password === userPassword,
    },
    buildInfo: { productName: "VendorCarrierServer", manufacturerName: "Vendor" },
  });
  await server.initialize();
  const ns = server.engine.addressSpace.getOwnNamespace();
  const objects = server.engine.addressSpace.rootFolder.objects;
  const fleet = ns.addFolder(objects, { browseName: "Carriers" });
  const carriers = [];
  const vars = [];
  const add = (obj, name, browseName, dataType, value, unit) => {
    const common = {
      componentOf: obj, browseName, nodeId: `s=${name}.${browseName}`, dataType,
      minimumSamplingInterval: 100, value: { dataType: DataType[dataType], value },
    };
    const v = unit ? ns.addAnalogDataItem({
      ...common, engineeringUnits: unit, engineeringUnitsRange: { low: -100, high: 100 },
    }) : ns.addVariable(common);
    vars.push({ v, dataType, base: value });
  };
  for (let i = 1; i <= 2; i++) {
    const name = `cart-${i}`;
    const obj = ns.addObject({ organizedBy: fleet, browseName: name });
    add(obj, name, "PayloadTemperature", "Double", 4.0 + i / 10, standardUnits.degree_celsius);
    add(obj, name, "Battery", "Double", 90.0 - i, standardUnits.percent);
    add(obj, name, "Speed", "Float", 0.0, null);
    add(obj, name, "DoorOpen", "Boolean", false, null);
    add(obj, name, "SerialNumber", "String", `SN-${i}`, null);
  }
  let tick = 0;
  setInterval(() => {
    tick += 1;
    for (const { v, dataType, base } of vars) {
      if (dataType === "Double" || dataType === "Float") {
        v.setValueFromSource({ dataType: DataType[dataType], value: base + Math.sin(tick / 10) });
      }
    }
  }, 100);
  await server.start();
  console.log(`READY ${server.getEndpointUrl()}`);
  const stop = async () => { await server.shutdown(0); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
main().catch((err) => { console.error(err); process.exit(1); });

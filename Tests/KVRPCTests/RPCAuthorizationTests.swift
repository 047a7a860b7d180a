import KVCore
import KVRPC
import KVWire
import Testing

struct RPCAuthorizationTests {
    /// Every `…Request` of the schema is served (a new one left out of `isRequest` is refused as "not a
    /// request" by every peer), and every other message is not.
    @Test(arguments: MessageType.allCases)
    func everyRequestTypeIsARequest(_ type: MessageType) {
        #expect(RPCAuthorization.isRequest(type) == "\(type)".hasSuffix("Request"))
    }

    /// Nodes and admins compare Merkle trees and copy records for anti-entropy; clients may not.
    @Test(arguments: [MessageType.merkleExchangeRequest, .merkleFetchRequest, .merkleApplyRequest, .streamRequest])
    func antiEntropyRequestsAreForNodesAndAdmins(_ type: MessageType) {
        #expect(RPCAuthorization.permits(.node, toSend: type))
        #expect(RPCAuthorization.permits(.admin, toSend: type))
        #expect(!RPCAuthorization.permits(.client, toSend: type))
    }
}

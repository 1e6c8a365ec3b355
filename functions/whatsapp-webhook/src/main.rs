//! GET/POST /webhooks/whatsapp: Meta's handshake and signed WhatsApp deliveries into the inbox.
// The nested futures of the runtime, the SDK and the handler exceed the default type-layout depth.
#![recursion_limit = "256"]

nex_shared::main!(Http<nex_shared::apps::messaging::WhatsAppWebhook>);

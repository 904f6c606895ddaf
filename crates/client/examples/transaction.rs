//! Transactional messages: the message becomes visible only if the local transaction commits.
//! The listener also answers the broker's check-backs for transactions whose outcome the
//! broker never received.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p apogee-client --example transaction`

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

use apogee_client::{LocalTransactionState, Message, MessageExt, Producer, TransactionListener};

/// Pretends to be the application's database: remembers each transaction's outcome.
#[derive(Default)]
struct OrderTransactions {
    outcomes: Mutex<HashMap<String, LocalTransactionState>>,
}

impl TransactionListener for OrderTransactions {
    fn execute_local(&self, msg: &Message, arg: &(dyn Any + Send + Sync)) -> LocalTransactionState {
        let amount = arg.downcast_ref::<u32>().copied().unwrap_or(0);
        // The local transaction: here, accept amounts up to 100.
        let state = if amount <= 100 {
            LocalTransactionState::CommitMessage
        } else {
            LocalTransactionState::RollbackMessage
        };
        if let Some(id) = msg.transaction_id() {
            if let Ok(mut outcomes) = self.outcomes.lock() {
                outcomes.insert(id.to_owned(), state);
            }
        }
        state
    }

    fn check_local(&self, msg: &MessageExt) -> LocalTransactionState {
        let id = msg
            .transaction_id
            .clone()
            .unwrap_or_else(|| msg.msg_id.clone());
        self.outcomes
            .lock()
            .ok()
            .and_then(|o| o.get(&id).copied())
            .unwrap_or(LocalTransactionState::Unknown)
    }
}

#[tokio::main]
async fn main() -> Result<(), apogee_client::ClientError> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let producer = Producer::builder()
        .group("ExampleTransactionGroup")
        .name_server(namesrv)
        .transaction_listener(OrderTransactions::default())
        .start()
        .await?;

    for amount in [10u32, 500] {
        let msg = Message::new("TransactionTopic", format!("pay {amount}")).with_tags("Payment");
        let result = producer.send_in_transaction(msg, &amount).await?;
        println!(
            "amount {amount}: half message {} -> {}",
            result.send_result.msg_id, result.local_state
        );
    }

    // An async local transaction (the listener still answers check-backs).
    let result = producer
        .send_in_transaction_with(
            Message::new("TransactionTopic", "async work"),
            |_msg| async { LocalTransactionState::CommitMessage },
        )
        .await?;
    println!("async: {}", result.local_state);

    producer.shutdown().await;
    Ok(())
}

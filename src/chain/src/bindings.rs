//! Solidity bindings (`sol!`) for the contract members this crate calls, decodes or reads.
//!
//! Written by hand in Solidity syntax from SPEC §2 (never generated from the ABI JSON, which is
//! not vendored). `tests/bindings_abi.rs` recomputes every selector/topic from the SDK ABI JSON in
//! `test/fixtures/sdk/abi/` and compares them with these declarations.

use alloy::sol;

sol! {
    /// An ERC-20 token: what a Machine Markets payment calls.
    #[derive(Debug)]
    interface IERC20 {
        function transfer(address to, uint256 amount) external returns (bool);
        function balanceOf(address owner) external view returns (uint256);
    }

    /// Batch precompile `0x…0805`.
    #[derive(Debug)]
    interface IBatch {
        function batchAll(address[] to, uint256[] value, bytes[] callData, uint64[] gasLimit) external;
        function batchSome(address[] to, uint256[] value, bytes[] callData, uint64[] gasLimit) external;
        event SubcallSucceeded(uint256 index);
        event SubcallFailed(uint256 index);
    }

    /// DID precompile `0x…0800`.
    #[derive(Debug)]
    interface IDid {
        struct Attribute { bytes name; bytes value; uint32 validity; uint256 created; }
        function readAttribute(address didAccount, bytes name) external view returns (Attribute attribute);
        function addAttribute(address didAccount, bytes name, bytes value, uint32 validityFor) external returns (bool ok);
        function updateAttribute(address didAccount, bytes name, bytes value, uint32 validityFor) external returns (bool ok);
        error EntryNotFound(address didAccount, bytes name);
    }

    /// EventRegistry, call surface shared by both generations, plus the errors of both.
    #[derive(Debug)]
    interface IEventRegistry {
        struct MachineEvent { uint256 machineId; uint8 eventType; uint256 value; uint256 timestamp; bytes32 dataHash;
                              uint8 trustLevel; uint256 sourceChainId; bytes32 sourceTxHash; bytes metadata; string currency; }
        function submitEvent(uint256 machineId, uint8 eventType, uint256 value, string currency, uint256 timestamp,
                             bytes32 dataHash, uint8 trustLevel, uint256 sourceChainId, bytes32 sourceTxHash, bytes metadata) external;
        function getEventCount(uint256 machineId) external view returns (uint256 count);
        function totalEventCount() external view returns (uint256 count);
        event EventSubmitted(uint256 indexed machineId, uint256 indexed eventIndex, uint8 eventType, uint256 value, string indexed currency);
        // gen 1 and gen 2
        error FutureTimestamp();
        error InvalidCurrencyShape();
        error InvalidEventType();
        error InvalidTrustLevel();
        error MetadataTooLarge();
        error OffsetOutOfBounds();
        error EnforcedPause();
        error InvalidAddress();
        // gen 1 only
        error MachineDeactivated();
        error MachineNotBonded();
        error MachineNotFound();
        error NotAuthorizedSubmitter();
        // gen 2 only
        error NotOwnerOrController();
        error SubscriptionNotEligible(uint8 status);
        error NotMachineStateAndSync();
    }

    /// Gen-1 IdentityRegistry (subset).
    #[derive(Debug)]
    interface IIdentityRegistry {
        function register() external payable returns (uint256 machineId);
        function registerFor(address machineAddress) external payable returns (uint256 machineId);
        function machineIdOfOwner(address addr) external view returns (uint256 machineId);
        function minBond() external view returns (uint256 bond);
        function machineExists(uint256 machineId) external view returns (bool exists);
        event Registered(uint256 indexed machineId, string machineURI, address indexed owner);
        error AlreadyRegistered();
        error BondBelowFloor();
        error BondNotRequired();
        error IncorrectBondAmount();
        error InvalidMachineAddress();
        error WalletAlreadyBound(address wallet);
        error IdentityNFTSoulbound();
        error MachineNotFound();
        error NotMachineOwner();
        error ContractNotConfigured();
    }

    /// Gen-1 IdentityStaking errors used by the SDK's gen-1 revert table.
    #[derive(Debug)]
    interface IIdentityStaking {
        error AlreadyStaked();
        error AmountZero();
        error NotAuthorized();
    }

    /// Gen-1 MachineNFT (subset).
    #[derive(Debug)]
    interface IMachineNft {
        function mint(uint256 machineId, address recipient) external;
        function tokenIdOf(uint256 machineId) external view returns (uint256 tokenId);
        function ownerOf(uint256 tokenId) external view returns (address owner);
        function approve(address to, uint256 tokenId) external;
        function getApproved(uint256 tokenId) external view returns (address approved);
        event MachineMinted(uint256 indexed tokenId, uint256 indexed machineId, address indexed recipient);
        event Approval(address indexed owner, address indexed approved, uint256 indexed tokenId);
        error ERC721InsufficientApproval(address operator, uint256 tokenId);
        error ERC721IncorrectOwner(address sender, uint256 tokenId, address owner);
        error ERC721InvalidApprover(address approver);
        error AlreadyMinted();
        error MachineNotBonded();
        error MachineNotFound();
        error NotMachineOwner();
        error RecipientMustBeMachineOwner();
    }

    /// Gen-1 MachineAccountFactory (SDK 0.11.2 smart accounts; subset).
    #[derive(Debug)]
    interface IMachineAccountFactory {
        function createAccount(address owner, address machine, uint256 salt) external returns (address account);
        function getAddress(address owner, address machine, uint256 salt) external view returns (address account);
        event AccountCreated(address indexed account, address indexed owner, address indexed machine);
        error Create2EmptyBytecode();
        error FailedDeployment();
        error InsufficientBalance(uint256 balance, uint256 needed);
        error InvalidAddress();
    }

    /// Gen-1 MachineNFTAdapter (LayerZero v2 ONFT adapter on peaq, SDK 0.11.2 `bridge`; subset).
    #[derive(Debug)]
    interface IMachineNftAdapter {
        struct SendParam { uint32 dstEid; bytes32 to; uint256 tokenId; bytes extraOptions; bytes composeMsg; bytes onftCmd; }
        struct MessagingFee { uint256 nativeFee; uint256 lzTokenFee; }
        struct MessagingReceipt { bytes32 guid; uint64 nonce; MessagingFee fee; }
        function quoteSend(SendParam _sendParam, bool _payInLzToken) external view returns (MessagingFee fee);
        function send(SendParam _sendParam, MessagingFee _fee, address _refundAddress) external payable returns (MessagingReceipt receipt);
        event ONFTSent(bytes32 indexed guid, uint32 dstEid, address indexed fromAddress, uint256 tokenId);
        error NoPeer(uint32 eid);
        error NotEnoughNative(uint256 msgValue);
        error OnlyNFTOwner(address caller, address owner);
        error InvalidReceiver();
        error LzTokenUnavailable();
        error InvalidOptions(bytes options);
    }

    /// Gen-2 DID document types (MachineStateAndSync / MachineRegistry).
    #[derive(Debug, PartialEq, Eq)]
    struct VerificationMethod { string id; string methodType; address controller; string publicKeyMultibase; }
    #[derive(Debug, PartialEq, Eq)]
    struct ServiceEndpoint { string id; string serviceType; string serviceEndpoint; }
    #[derive(Debug, PartialEq, Eq)]
    struct DIDDocument { string id; address controller; VerificationMethod[] verificationMethods; uint256[] authentication; ServiceEndpoint[] serviceEndpoints; }

    /// Gen-2 MachineStateAndSync (subset).
    #[derive(Debug)]
    interface IMachineStateAndSync {
        function activateMachine(DIDDocument doc, string machineType_, bytes credentialSubject_, address manufacturer_, uint8 tier) external returns (uint256 machineId);
        function isTechnicalPaused(uint256 machineId) external view returns (bool paused);
        function isTechnicalPausedGlobal() external view returns (bool paused);
        event MachineOnboarded(uint256 indexed machineId, address indexed operator);
        error NotOwnerOrController();
        error MachineRelocating();
        error NotActive();
        error NotSuspended();
        error TierChosenOnSubscriptionChain();
    }

    /// Gen-2 MachineRegistry (subset).
    #[derive(Debug)]
    interface IMachineRegistry {
        function computeTokenId(string machineType_, bytes credentialSubject_) external pure returns (uint256 tokenId);
        function ownerOf(uint256 tokenId) external view returns (address owner);
        function controllerOf(uint256 tokenId) external view returns (address controller);
        event MachineMinted(uint256 indexed tokenId, address indexed to, address indexed controller, string machineType);
        error CredentialSubjectMismatch();
        error InvalidAuthenticationIndex();
        error InvalidDIDFormat();
        error NotOwnerOrController();
        error NotMachineOwner();
        error MachineRelocating();
        error ERC721NonexistentToken(uint256 tokenId);
    }

    /// Gen-2 MachineSubscription (subset).
    #[derive(Debug)]
    interface IMachineSubscription {
        function requiredPeaqAmount(uint8 tier) external view returns (uint256 amount);
        function pendingVoucherCredit(address operator) external view returns (uint256 credit);
        function subscriptionStatus(uint256 machineId) external view returns (uint8 status);
        function isEconomicAuthority() external view returns (bool authority);
        event Activated(uint256 indexed machineId, address indexed operator, uint8 tier, uint256 bondedAmount, uint64 periodStart, uint64 periodEnd);
        event VoucherRedeemed(uint256 indexed machineId, address indexed operator, uint256 amount);
        error AlreadyActivated();
        error InvalidTier();
        error PriceNotAvailable();
        error TechnicallyPaused();
        error TierChangeWhileActive();
        error NotActivated();
        error NotOwnerOrController();
    }

    /// Gen-2 InfoDesk (subset).
    #[derive(Debug)]
    interface IInfoDesk {
        function peaqToken() external view returns (address token);
        function peer(bytes32 key) external view returns (address peerAddress);
    }

    /// PEAQ as ERC-20 (precompile `0x…0809`).
    #[derive(Debug)]
    interface IPeaqToken {
        function balanceOf(address account) external view returns (uint256 balance);
        function allowance(address owner, address spender) external view returns (uint256 remaining);
        function approve(address spender, uint256 amount) external returns (bool ok);
        event Approval(address indexed owner, address indexed spender, uint256 value);
    }

    /// Solidity's built-in revert reasons.
    #[derive(Debug)]
    interface IBuiltinErrors {
        error Error(string message);
        error Panic(uint256 code);
    }
}
